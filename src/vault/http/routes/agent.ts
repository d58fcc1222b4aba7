// /v1/agent/*: what agents call. Register with an enrol token (or admin) to get an agent token bound
// to the machine; heartbeat with it to report the machine's properties and receive the assignment.
import type { FastifyInstance } from "fastify";
import { recordHeartbeat, registerAgent } from "../../inventory/machines.ts";
import { principalOf, requireOwnMachine } from "../auth.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import {
  AgentHeartbeatReplySchema,
  AgentHeartbeatSchema,
  AgentRegisteredSchema,
  AgentRegisterSchema,
} from "../schemas.ts";

export function agentRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  const intervalS = deps.heartbeatIntervalMs / 1000;
  route(app, {
    method: "POST",
    url: "/v1/agent/register",
    operationId: "registerAgent",
    tags: ["agent"],
    summary: "Register an agent (enrol token): its machine is found by the id on its disk or created",
    allow: ["enrol"],
    body: AgentRegisterSchema,
    response: AgentRegisteredSchema,
    problems: [404, 409],
    handler: async (req) => {
      requireOwnMachine(req, req.body.machineId);
      const r = await registerAgent(db, req.body, {
        now: deps.now(),
        heartbeatIntervalMs: deps.heartbeatIntervalMs,
      });
      // the process servers learn the new agent token now, not at the next periodic refresh
      await deps.dr?.replication.refresh();
      return { ...r, heartbeatIntervalSeconds: intervalS };
    },
  });
  route(app, {
    method: "POST",
    url: "/v1/agent/heartbeat",
    operationId: "agentHeartbeat",
    tags: ["agent"],
    summary: "Report the machine's properties and replication progress; answers with the assignment",
    allow: ["agent"],
    body: AgentHeartbeatSchema,
    response: AgentHeartbeatReplySchema,
    problems: [404],
    handler: async (req) => {
      requireOwnMachine(req, req.body.machineId);
      const { tokenId, siteId } = principalOf(req);
      await recordHeartbeat(db, req.body, deps.now(), { tokenId, siteId });
      return {
        assignment: await deps.assignmentFor(req.body.machineId, req.body, siteId),
        heartbeatIntervalSeconds: intervalS,
      };
    },
  });
}
