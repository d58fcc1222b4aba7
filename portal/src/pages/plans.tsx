// Recovery plans: placeholder until the plan pages land.
import { Empty } from "../ui/kit.tsx";

export function PlansPage() {
  return <Empty title="Recovery plans" />;
}

export function PlanPage(p: { plan: string; query: URLSearchParams }) {
  return <Empty title={`Plan ${p.plan}`} />;
}
