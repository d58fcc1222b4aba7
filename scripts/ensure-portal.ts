// Builds the portal when portal/dist is missing or older than its sources (./dev demo, ./dev test).
import { buildPortal, portalIsCurrent } from "./portal-build.ts";

if (!portalIsCurrent()) {
  const r = await buildPortal();
  console.error(`portal built in ${r.ms} ms`);
}
