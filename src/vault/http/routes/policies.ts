// /v1/policies: replication policies (RPO threshold, retention, point frequencies).
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { createPolicy, getPolicy, listPolicies, updatePolicy } from "../../inventory/policies.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import { CreatePolicySchema, PolicySchema, RefSchema, UpdatePolicySchema } from "../schemas.ts";

export function policiesRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  route(app, {
    method: "GET",
    url: "/v1/policies",
    operationId: "listPolicies",
    tags: ["policies"],
    summary: "List the replication policies",
    response: Type.Array(PolicySchema),
    handler: async () => listPolicies(db),
  });
  route(app, {
    method: "GET",
    url: "/v1/policies/:policy",
    operationId: "getPolicy",
    tags: ["policies"],
    summary: "Show a policy by id or name",
    params: Type.Object({ policy: RefSchema }),
    response: PolicySchema,
    problems: [404],
    handler: async (req) => getPolicy(db, req.params.policy),
  });
  route(app, {
    method: "POST",
    url: "/v1/policies",
    operationId: "createPolicy",
    tags: ["policies"],
    summary: "Create a policy",
    description:
      "Durations as operators write them (15m, 72h). Rules: retention ≥ crashConsistentEvery; appConsistentEvery 0 (none) or ≥ crashConsistentEvery.",
    body: CreatePolicySchema,
    status: 201,
    response: PolicySchema,
    problems: [409],
    handler: async (req) => createPolicy(db, req.body, deps.now()),
  });
  route(app, {
    method: "PATCH",
    url: "/v1/policies/:policy",
    operationId: "updatePolicy",
    tags: ["policies"],
    summary: "Change some of a policy's values (the rules are checked on the result)",
    params: Type.Object({ policy: RefSchema }),
    body: UpdatePolicySchema,
    response: PolicySchema,
    problems: [404, 409],
    handler: async (req) => updatePolicy(db, req.params.policy, req.body),
  });
}
