// The appliance control API between the vault and a `switchback appliance` process: its routes and
// the JSON schemas of their bodies, one source of truth for the appliance's validation (control-api.ts)
// and the vault's client (src/vault/remote-site.ts). Every request carries `Authorization: Bearer
// <control secret>`, the secret the appliance made at its start and registered with the vault; nobody
// else has it. Errors are problem documents with a stable code (the vault rethrows them as they are).
import { type Static, Type } from "@sinclair/typebox";
import { MachineIdentitySchema } from "../agent/identity.ts";
import { InstanceSpecSchema } from "../compute/process/record.ts";
import { PointHeaderSchema } from "../replication/wire.ts";

const seg = (s: string) => encodeURIComponent(s);

export const controlRoutes = {
  site: "/v1/site",
  directory: "/v1/directory",
  points: (ds: string, item: string) => `/v1/datastores/${seg(ds)}/items/${seg(item)}/points`,
  point: (ds: string, item: string, point: string) =>
    `/v1/datastores/${seg(ds)}/items/${seg(item)}/points/${seg(point)}`,
  seed: (ds: string, item: string) => `/v1/datastores/${seg(ds)}/items/${seg(item)}/seed`,
  apply: (ds: string, item: string) => `/v1/datastores/${seg(ds)}/items/${seg(item)}/apply`,
  retention: (ds: string) => `/v1/datastores/${seg(ds)}/retention`,
  space: (ds: string) => `/v1/datastores/${seg(ds)}/space`,
  disksPresent: "/v1/disks/present",
  instances: "/v1/instances",
  instance: (id: string) => `/v1/instances/${seg(id)}`,
  start: (id: string) => `/v1/instances/${seg(id)}/start`,
  stop: (id: string) => `/v1/instances/${seg(id)}/stop`,
  changePoint: (id: string) => `/v1/instances/${seg(id)}/change-point`,
  label: (id: string) => `/v1/instances/${seg(id)}/identity-label`,
};

export const SiteInfoSchema = Type.Object({
  appliance: Type.String(),
  site: Type.String({ description: "the site's id" }),
  provider: Type.String({ description: "the compute provider's kind" }),
  datastores: Type.Array(Type.Object({ id: Type.String(), name: Type.String(), url: Type.String() })),
});
export type SiteInfo = Static<typeof SiteInfoSchema>;

export const PointsSchema = Type.Object({ points: Type.Array(PointHeaderSchema) });

const DiskSchema = Type.Object({ path: Type.String({ minLength: 1 }), uuid: Type.String() });

export const SeedBodySchema = Type.Object({ disks: Type.Array(DiskSchema, { minItems: 1 }) });
export const SeedResultSchema = Type.Object({ pointId: Type.String(), bytesRead: Type.Number() });
export const ApplyBodySchema = Type.Object({
  point: Type.String(),
  disks: Type.Array(DiskSchema, { minItems: 1 }),
});
export const WrittenSchema = Type.Object({ blocksWritten: Type.Number(), bytesWritten: Type.Number() });
export const DeletedSchema = Type.Object({ deleted: Type.Array(Type.String()) });

export const RetentionBodySchema = Type.Object({
  now: Type.String(),
  items: Type.Array(
    Type.Object({
      item: Type.String(),
      policy: Type.Object({
        keepWithinMs: Type.Number(),
        keepAllWithinMs: Type.Optional(Type.Number()),
        appEveryMs: Type.Optional(Type.Number()),
        crashEveryMs: Type.Optional(Type.Number()),
      }),
    }),
  ),
});
export const RetentionResultSchema = Type.Object({
  items: Type.Number(),
  pruned: Type.Number(),
  bytesFreed: Type.Number(),
});
export const SpaceSchema = Type.Object({ freeBytes: Type.Union([Type.Number(), Type.Null()]) });
export const PathsSchema = Type.Object({ paths: Type.Array(Type.String()) });
export const PresentSchema = Type.Object({ present: Type.Boolean() });

export const CreateInstanceSchema = Type.Object({ spec: InstanceSpecSchema });
export const InstanceInfoSchema = Type.Object({
  id: Type.String(),
  state: Type.Union([Type.Literal("running"), Type.Literal("stopped")]),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  disks: Type.Array(Type.String()),
  folder: Type.String(),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  exitCode: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
});
export const StopBodySchema = Type.Object({ timeoutMs: Type.Optional(Type.Integer({ minimum: 0 })) });
export const StoppedSchema = Type.Object({ graceful: Type.Boolean(), wasRunning: Type.Boolean() });
export const ChangePointBodySchema = Type.Object({
  datastore: Type.String(),
  item: Type.String(),
  point: Type.String(),
  base: Type.Optional(
    Type.Object({ point: Type.String(), at: Type.String(), diskUuids: Type.Array(Type.String()) }),
  ),
});
export const DeleteQuerySchema = Type.Object({
  keepDisks: Type.Optional(Type.Boolean()),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 0 })),
});
export const LabelBodySchema = Type.Object({ identity: MachineIdentitySchema });
export const OkSchema = Type.Object({ ok: Type.Boolean() });
