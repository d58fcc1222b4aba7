// /v1/appliances: each site's data-plane services (process server, master target), and what a
// `switchback appliance` process calls with its appliance token (docs/vault.md, "Appliances as their
// own processes"): register, heartbeat, its site's part of the replication directory, and the points
// its process servers committed.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { SiteDirectorySchema } from "../../../appliance/directory.ts";
import type { PointHeader } from "../../../datastore/manifest.ts";
import { SwitchbackError } from "../../../domain/errors.ts";
import { PointHeaderSchema } from "../../../replication/wire.ts";
import type { DrRuntime } from "../../dr.ts";
import {
  createRemoteAppliance,
  getAppliance,
  getApplianceRow,
  heartbeatAppliance,
  listAppliances,
  registerRemoteAppliance,
} from "../../inventory/appliances.ts";
import { createToken } from "../../inventory/tokens.ts";
import { processServerPort } from "../../site.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import {
  ApplianceHeartbeatSchema,
  ApplianceRegisteredSchema,
  ApplianceSchema,
  ApplianceTokenRequestSchema,
  ApplianceTokenSchema,
  CreateApplianceSchema,
  RefSchema,
  RegisterApplianceSchema,
  SiteFilterSchema,
} from "../schemas.ts";

function dr(deps: VaultDeps): DrRuntime {
  if (deps.dr === undefined) {
    throw new SwitchbackError(
      "VAULT_STARTING",
      "the vault's disaster-recovery runtime is starting; retry in a moment",
    );
  }
  return deps.dr;
}

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
    summary: "Report that an appliance is alive (where agents reach it, its datastores' figures)",
    allow: ["appliance"],
    params: Type.Object({ appliance: RefSchema }),
    body: ApplianceHeartbeatSchema,
    response: ApplianceSchema,
    problems: [404],
    handler: async (req) => {
      const now = deps.now();
      const row = await heartbeatAppliance(db, req.params.appliance, {
        now,
        ...(req.body.url !== undefined ? { url: req.body.url } : {}),
        ...(req.body.datastores !== undefined ? { datastores: req.body.datastores } : {}),
      });
      deps.dr?.heard(row.site_id);
      // a restarted appliance's process servers are asked where they listen (errors: the next round)
      if (row.control_url !== null) deps.dr?.appliancesChanged().catch(() => {});
      return getAppliance(db, req.params.appliance, { now, heartbeatIntervalMs: deps.heartbeatIntervalMs });
    },
  });
  route(app, {
    method: "POST",
    url: "/v1/appliance-tokens",
    operationId: "createApplianceToken",
    tags: ["appliances"],
    summary: "Create a token a `switchback appliance` process registers and reports with (--token)",
    body: ApplianceTokenRequestSchema,
    status: 201,
    response: ApplianceTokenSchema,
    handler: async (req) => {
      const t = await createToken(db, {
        role: "appliance",
        name: req.body.name ?? "appliance",
        now: deps.now(),
      });
      return { id: t.id, token: t.token };
    },
  });
  route(app, {
    method: "POST",
    url: "/v1/appliances/register",
    operationId: "registerAppliance",
    tags: ["appliances"],
    summary:
      "Register a `switchback appliance` process (at every start): its control API, the secret the vault presents there, its datastores",
    allow: ["appliance"],
    body: RegisterApplianceSchema,
    response: ApplianceRegisteredSchema,
    problems: [404, 409, 503],
    handler: async (req) => {
      const runtime = dr(deps);
      const r = await registerRemoteAppliance(db, req.body, clock());
      // the vault reaches it once it listens; a failure here is retried by the runtime's next round
      await runtime.appliancesChanged().catch(() => {});
      const datastores = [];
      for (const d of r.datastores) datastores.push({ ...d, port: await processServerPort(db, d.id) });
      return {
        appliance: r.appliance,
        datastores,
        heartbeatIntervalSeconds: deps.heartbeatIntervalMs / 1000,
        machineEnrolToken: runtime.machineEnv.SWITCHBACK_ENROL_TOKEN ?? "",
      };
    },
  });
  route(app, {
    method: "GET",
    url: "/v1/appliances/:appliance/directory",
    operationId: "applianceDirectory",
    tags: ["appliances"],
    summary:
      "The appliance's site's part of the replication directory: agents' token digests and which items each may replicate there, with which generation",
    allow: ["appliance"],
    params: Type.Object({ appliance: RefSchema }),
    response: SiteDirectorySchema,
    problems: [404, 503],
    handler: async (req) => {
      const runtime = dr(deps);
      const a = await getApplianceRow(db, req.params.appliance);
      return runtime.replication.directoryFor(a.site_id);
    },
  });
  route(app, {
    method: "POST",
    url: "/v1/appliances/:appliance/commits",
    operationId: "applianceCommit",
    tags: ["appliances"],
    summary: "A point one of the appliance's process servers committed (the item's latest point)",
    allow: ["appliance"],
    params: Type.Object({ appliance: RefSchema }),
    body: Type.Object(
      { datastore: Type.String(), item: Type.String(), point: PointHeaderSchema },
      { additionalProperties: false },
    ),
    response: Type.Object({ recorded: Type.Boolean() }),
    problems: [404, 409, 503],
    handler: async (req) => {
      const runtime = dr(deps);
      const a = await getApplianceRow(db, req.params.appliance);
      const ds = await db
        .selectFrom("datastores")
        .select(["id", "appliance_id"])
        .where("id", "=", req.body.datastore)
        .executeTakeFirst();
      if (ds === undefined || ds.appliance_id !== a.id) {
        throw new SwitchbackError(
          "DATASTORE_NOT_SERVED",
          `datastore ${req.body.datastore} is not one appliance ${a.name} serves; register the appliance again`,
        );
      }
      await runtime.replication.pointCommitted(ds.id, req.body.item, req.body.point as PointHeader);
      return { recorded: true };
    },
  });
}
