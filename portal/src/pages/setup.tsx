// First run: placeholder until the set-up walk-through lands.
import { Empty } from "../ui/kit.tsx";

export function SetupPage() {
  return <Empty title="Set up" />;
}
