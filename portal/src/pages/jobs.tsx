// Jobs: placeholder until the jobs pages land.
import { Empty } from "../ui/kit.tsx";

export function JobsPage(_p: { query: URLSearchParams }) {
  return <Empty title="Jobs" />;
}

export function JobPage(p: { job: string }) {
  return <Empty title={`Job ${p.job}`} />;
}
