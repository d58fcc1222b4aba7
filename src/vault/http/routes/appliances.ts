// /v1/appliances: each site's data-plane services (process server, master target).
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import {
  createRemoteAppliance,
  getAppliance,
  heartbeatAppliance,
  listAppliances,
} from "../../inventory/appliances.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import { ApplianceSchema, CreateApplianceSchema, RefSchema, SiteFilterSchema } from "../schemas.ts";

export function appliancesRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  const clock = () => ({ now: deps.now(), heartbeatIntervalMs: deps.heartbeatIntervalMs });
  route(app, {
    method: "GET",
    url: "/v1/appliances",
    operationId: "listAppliances",
    tags: ["appliances"],
    summary: "List the appliances, optionally of one site",
    query: SiteFilterSchema,
    response: Type.Array(ApplianceSchema),
    problems: [404],
    handler: async (req) => listAppliances(db, clock(), req.query),
  });
  route(app, {
    method: "GET",
    url: "/v1/appliances/:appliance",
    operationId: "getAppliance",
    tags: ["appliances"],
    summary: "Show an appliance by id or name",
    params: Type.Object({ appliance: RefSchema }),
    response: ApplianceSchema,
    problems: [404],
    handler: async (req) => getAppliance(db, req.params.appliance, clock()),
  });
  route(app, {
    method: "POST",
    url: "/v1/appliances",
    operationId: "createAppliance",
    tags: ["appliances"],
    summary: "Register a remote appliance (a separate `switchback appliance` process)",
    body: CreateApplianceSchema,
    status: 201,
    response: ApplianceSchema,
    problems: [404, 409],
    handler: async (req) => createRemoteAppliance(db, req.body, clock()),
  });
  route(app, {
    method: "POST",
    url: "/v1/appliances/:appliance/heartbeat",
    operationId: "heartbeatAppliance",
    tags: ["appliances"],
    summary: "Report that an appliance is alive (and where agents reach it)",
    params: Type.Object({ appliance: RefSchema }),
    body: Type.Object(
      { url: Type.Optional(Type.String({ pattern: "^https?://[^\\s]+$" })) },
      { additionalProperties: false },
    ),
    response: ApplianceSchema,
    problems: [404],
    handler: async (req) => {
      const now = deps.now();
      await heartbeatAppliance(db, req.params.appliance, {
        now,
        ...(req.body.url !== undefined ? { url: req.body.url } : {}),
      });
      return getAppliance(db, req.params.appliance, { now, heartbeatIntervalMs: deps.heartbeatIntervalMs });
    },
  });
}
