// The vault API's shapes as TypeBox schemas: the one source of truth for request validation, handler
// types, the OpenAPI document and the CLI's --json output. Field names are camelCase; times are ISO
// 8601 UTC strings; durations come in as operator strings ("15m", "72h") and go out as seconds.
// Request bodies refuse unknown fields (additionalProperties: false), so a typo is a 400, not a no-op.
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { AssignmentSchema, CommandResultSchema, LastPointSchema } from "../../agent/protocol.ts";

export { ProblemSchema } from "../../replication/wire.ts";

// ---- building blocks ----

export const NAME_PATTERN = "^[A-Za-z0-9._-]{1,64}$";
export const NameSchema = Type.String({
  pattern: NAME_PATTERN,
  description: "1 to 64 letters, digits, '.', '_' or '-'",
});
/** An id, or a name: every `{site}`-style path parameter accepts either. */
export const RefSchema = Type.String({
  pattern: "^[A-Za-z0-9._-]{1,128}$",
  description: "id or name",
});
/** A machine id as the identity label on the machine's OS disk carries it (a uuid or a vault id). */
export const MachineIdSchema = Type.String({ pattern: "^[A-Za-z0-9._-]{1,128}$" });
export const DurationSchema = Type.String({
  pattern: "^(\\d+(\\.\\d+)?(ms|s|m|h|d|w))+$",
  description: "a duration: 15m, 72h, 1h30m, 7d",
  examples: ["15m"],
});
/** A frequency: a duration, or "0" / "none" for never. */
export const FrequencySchema = Type.String({
  pattern: "^((\\d+(\\.\\d+)?(ms|s|m|h|d|w))+|0|none)$",
  description: "a duration (4h), or 0 / none for never",
});
export const TimeSchema = Type.String({ format: "date-time" });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
export const SubnetSchema = Type.String({
  pattern: "^\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}/\\d{1,2}$",
  description: "an IPv4 subnet in CIDR notation, e.g. 10.10.0.0/24",
});
const Bytes = Type.Integer({ minimum: 0 });

export const LivenessSchema = Type.Union([
  Type.Literal("online"),
  Type.Literal("lost"),
  Type.Literal("unknown"),
]);

export const ProgressSchema = Type.Object({
  bytesDone: Bytes,
  bytesTotal: Bytes,
  percent: Type.Number(),
  bytesPerSecond: Type.Number(),
  etaSeconds: Nullable(Type.Number()),
  sampledAt: Nullable(TimeSchema),
});

// ---- sites ----

export const SiteSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  subnet: Nullable(Type.String()),
  createdAt: TimeSchema,
});
export type Site = Static<typeof SiteSchema>;

export const CreateSiteSchema = Type.Object(
  { name: NameSchema, subnet: Type.Optional(SubnetSchema) },
  { additionalProperties: false },
);
export type CreateSite = Static<typeof CreateSiteSchema>;

// ---- appliances ----

export const ApplianceRoleSchema = Type.Union([
  Type.Literal("process-server"),
  Type.Literal("master-target"),
]);
export type ApplianceRole = Static<typeof ApplianceRoleSchema>;

export const ApplianceSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  siteId: Type.String(),
  site: Type.String({ description: "the site's name" }),
  roles: Type.Array(ApplianceRoleSchema),
  url: Nullable(Type.String()),
  kind: Type.Union([Type.Literal("in-process"), Type.Literal("remote")]),
  controlUrl: Nullable(
    Type.String({
      description: "a registered `switchback appliance`: where the vault reaches its control API",
    }),
  ),
  lastHeartbeatAt: Nullable(TimeSchema),
  createdAt: TimeSchema,
  health: Type.Object({ liveness: LivenessSchema }),
});
export type Appliance = Static<typeof ApplianceSchema>;

const UrlSchema = Type.String({ pattern: "^https?://[^\\s]+$" });

export const RegisterApplianceSchema = Type.Object(
  {
    name: NameSchema,
    site: RefSchema,
    roles: Type.Array(ApplianceRoleSchema, { minItems: 1, uniqueItems: true }),
    controlUrl: { ...UrlSchema, description: "where the vault reaches the appliance's control API" },
    controlSecret: Type.String({
      minLength: 32,
      maxLength: 256,
      description: "the bearer the vault presents at the control API (made anew at every appliance start)",
    }),
    datastores: Type.Array(
      Type.Object(
        { location: Type.String({ minLength: 1, description: "an absolute path on the appliance's host" }) },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 64 },
    ),
  },
  { additionalProperties: false },
);
export type RegisterAppliance = Static<typeof RegisterApplianceSchema>;

export const ApplianceRegisteredSchema = Type.Object({
  appliance: ApplianceSchema,
  /** the datastores it serves, by the vault's ids, in the order they were given */
  datastores: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      location: Type.String(),
      port: Type.Integer({
        minimum: 0,
        description: "the port its process server had last time (0: none): agents keep reaching it",
      }),
    }),
  ),
  heartbeatIntervalSeconds: Type.Number(),
  machineEnrolToken: Type.String({
    description: "the enrol token machines the appliance boots register with",
  }),
});
export type ApplianceRegistered = Static<typeof ApplianceRegisteredSchema>;

export const ApplianceHeartbeatSchema = Type.Object(
  {
    url: Type.Optional(UrlSchema),
    datastores: Type.Optional(
      Type.Array(
        Type.Object(
          { id: Type.String(), capacityBytes: Bytes, usedBytes: Bytes },
          { additionalProperties: false },
        ),
        { maxItems: 64 },
      ),
    ),
  },
  { additionalProperties: false },
);
export type ApplianceHeartbeat = Static<typeof ApplianceHeartbeatSchema>;

export const ApplianceTokenRequestSchema = Type.Object(
  { name: Type.Optional(NameSchema) },
  { additionalProperties: false },
);
export const ApplianceTokenSchema = Type.Object({
  id: Type.String(),
  token: Type.String({ description: "shown once; the vault keeps only its SHA-256" }),
});

export const CreateApplianceSchema = Type.Object(
  {
    name: NameSchema,
    site: RefSchema,
    roles: Type.Array(ApplianceRoleSchema, { minItems: 1, uniqueItems: true }),
    url: Type.String({ pattern: "^https?://[^\\s]+$", description: "where agents reach its process server" }),
  },
  { additionalProperties: false },
);
export type CreateAppliance = Static<typeof CreateApplianceSchema>;

// ---- datastores ----

export const DatastoreSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  siteId: Type.String(),
  site: Type.String({ description: "the site's name" }),
  kind: Type.Literal("local"),
  location: Type.String({
    description:
      "an absolute path on the host of the appliance that serves it (the vault's host for an in-process one)",
  }),
  applianceId: Nullable(Type.String({ description: "the remote appliance that serves it; null: the vault" })),
  capacityBytes: Nullable(Bytes),
  usedBytes: Nullable(Bytes),
  lastSeenAt: Nullable(TimeSchema),
  createdAt: TimeSchema,
  health: Type.Object({
    reachable: Type.Boolean({ description: "its location answered the last time it was read" }),
  }),
});
export type DatastoreInfo = Static<typeof DatastoreSchema>;

export const CreateDatastoreSchema = Type.Object(
  {
    name: NameSchema,
    site: RefSchema,
    kind: Type.Optional(Type.Literal("local")),
    path: Type.String({
      pattern: "^/",
      minLength: 2,
      description: "absolute path of the datastore's folder",
    }),
  },
  { additionalProperties: false },
);
export type CreateDatastore = Static<typeof CreateDatastoreSchema>;

// ---- policies ----

export const PolicySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  rpoThresholdSeconds: Type.Number(),
  retentionSeconds: Type.Number(),
  appConsistentEverySeconds: Type.Number({ description: "0: no app-consistent points" }),
  crashConsistentEverySeconds: Type.Number(),
  derivedFrom: Nullable(Type.String({ description: "a failback policy: the id of the policy it mirrors" })),
  createdAt: TimeSchema,
});
export type Policy = Static<typeof PolicySchema>;

const policyFields = {
  rpoThreshold: DurationSchema,
  retention: DurationSchema,
  appConsistentEvery: FrequencySchema,
  crashConsistentEvery: DurationSchema,
};
export const CreatePolicySchema = Type.Object(
  { name: NameSchema, ...policyFields },
  { additionalProperties: false },
);
export type CreatePolicy = Static<typeof CreatePolicySchema>;
export const UpdatePolicySchema = Type.Partial(Type.Object(policyFields), {
  additionalProperties: false,
  minProperties: 1,
});
export type UpdatePolicy = Static<typeof UpdatePolicySchema>;

// ---- machines ----

const MountPath = Type.String({
  pattern: "^/([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$",
  description: "where the disk's file system is mounted in the machine ('/' is its root file system)",
});
const Ipv4 = Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}$" });
const PortSchema = Type.Integer({ minimum: 1, maximum: 65535 });

/** A machine's layout at its home site: its disks' file systems and mount points, its address. */
export const MachineLayoutSchema = Type.Object(
  {
    disks: Type.Array(
      Type.Object(
        {
          filesystem: Type.Optional(Type.Union([Type.Literal("ext4"), Type.Literal("xfs")])),
          mountAt: Type.Optional(MountPath),
        },
        { additionalProperties: false },
      ),
    ),
    network: Type.Optional(
      Type.Object(
        {
          name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
          ip: Type.Optional(Ipv4),
          publicPort: Type.Optional(PortSchema),
          servicePort: Type.Optional(PortSchema),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type MachineLayout = Static<typeof MachineLayoutSchema>;

export const MachineDiskSchema = Type.Object({
  uuid: Type.String(),
  path: Nullable(Type.String()),
  sizeBytes: Bytes,
  sectorSize: Type.Integer({ minimum: 512 }),
  role: Type.Union([Type.Literal("os"), Type.Literal("data")]),
});
export type MachineDisk = Static<typeof MachineDiskSchema>;

export const NicSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64 }),
    mac: Type.String({ pattern: "^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$" }),
    addresses: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type Nic = Static<typeof NicSchema>;

export const PowerStateSchema = Type.Union([
  Type.Literal("running"),
  Type.Literal("stopped"),
  Type.Literal("gone"),
  Type.Literal("unknown"),
]);

export const MachineSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  siteId: Nullable(Type.String()),
  site: Nullable(Type.String({ description: "the site's name" })),
  instanceId: Nullable(Type.String()),
  hostname: Nullable(Type.String()),
  os: Nullable(Type.String()),
  cpus: Nullable(Type.Integer()),
  memoryBytes: Nullable(Bytes),
  disks: Type.Array(MachineDiskSchema),
  nics: Type.Array(NicSchema),
  bootCommand: Nullable(Type.String()),
  layout: Nullable(MachineLayoutSchema),
  powerState: PowerStateSchema,
  lastHeartbeatAt: Nullable(TimeSchema),
  createdAt: TimeSchema,
  updatedAt: TimeSchema,
  health: Type.Object({
    liveness: LivenessSchema,
    replication: Nullable(ProgressSchema),
  }),
});
export type Machine = Static<typeof MachineSchema>;

export const CreateMachineSchema = Type.Object(
  {
    name: NameSchema,
    site: RefSchema,
    bootCommand: Type.String({ minLength: 1, maxLength: 4096 }),
    disks: Type.Array(
      Type.Object(
        {
          sizeBytes: Type.Integer({ minimum: 4096 }),
          sectorSize: Type.Optional(Type.Union([Type.Literal(512), Type.Literal(4096)])),
          filesystem: Type.Optional(Type.Union([Type.Literal("ext4"), Type.Literal("xfs")])),
          mountAt: Type.Optional(MountPath),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 64, description: "the first disk is the OS disk" },
    ),
    network: Type.Optional(
      Type.Object(
        {
          name: Type.Optional(
            Type.String({ minLength: 1, maxLength: 64, description: "the home site's network" }),
          ),
          ip: Type.Optional(Ipv4),
          publicPort: Type.Optional(PortSchema),
          servicePort: Type.Optional(PortSchema),
        },
        {
          additionalProperties: false,
          description: "privileged machines: where it joins its home site's network",
        },
      ),
    ),
  },
  { additionalProperties: false },
);
export type CreateMachine = Static<typeof CreateMachineSchema>;

// ---- tokens and agents ----

export const EnrolTokenRequestSchema = Type.Object(
  {
    machine: Type.Optional(MachineIdSchema),
    name: Type.Optional(NameSchema),
  },
  { additionalProperties: false },
);
export const EnrolTokenSchema = Type.Object({
  id: Type.String(),
  token: Type.String({ description: "shown once; the vault keeps only its SHA-256" }),
  machineId: Nullable(Type.String({ description: "the only machine that may register with it" })),
});

export const AgentRegisterSchema = Type.Object(
  {
    machineId: MachineIdSchema,
    name: Type.Optional(NameSchema),
    instanceId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    site: Type.Optional(RefSchema),
  },
  { additionalProperties: false },
);
export type AgentRegister = Static<typeof AgentRegisterSchema>;
export const AgentRegisteredSchema = Type.Object({
  machineId: Type.String(),
  agentToken: Type.String({ description: "shown once; send it as a bearer token on /v1/agent/*" }),
  heartbeatIntervalSeconds: Type.Number(),
});

export const AgentDiskSchema = Type.Object(
  {
    /** from the identity label; empty for a disk the label does not list */
    uuid: Type.String({ maxLength: 64 }),
    path: Type.String({ minLength: 1, maxLength: 4096 }),
    sizeBytes: Bytes,
    sectorSize: Type.Integer({ minimum: 512, maximum: 65536 }),
  },
  { additionalProperties: false },
);
export const AgentHeartbeatSchema = Type.Object(
  {
    machineId: MachineIdSchema,
    hostname: Type.String({ minLength: 1, maxLength: 255 }),
    os: Type.String({ minLength: 1, maxLength: 255 }),
    cpus: Type.Integer({ minimum: 1 }),
    memoryBytes: Bytes,
    disks: Type.Array(AgentDiskSchema, { maxItems: 64 }),
    nics: Type.Array(NicSchema, { maxItems: 64 }),
    /** progress of the copy under way; left out when none is (the last report is kept) */
    replication: Type.Optional(
      Type.Object(
        { bytesDone: Bytes, bytesTotal: Bytes, bytesPerSecond: Type.Number({ minimum: 0 }) },
        { additionalProperties: false },
      ),
    ),
    /** the instance this copy of the machine runs in (SWITCHBACK_INSTANCE), when a provider of ours runs it */
    instanceId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    /** results of the commands the last assignments carried (src/agent/protocol.ts) */
    results: Type.Optional(Type.Array(CommandResultSchema, { maxItems: 1000 })),
    /** the agent's report of the last point it took */
    lastPoint: Type.Optional(LastPointSchema),
  },
  { additionalProperties: false },
);
export type AgentHeartbeat = Static<typeof AgentHeartbeatSchema>;
export const AgentHeartbeatReplySchema = Type.Object({
  assignment: AssignmentSchema,
  heartbeatIntervalSeconds: Type.Number(),
});

// ---- common params ----

export const SiteFilterSchema = Type.Object(
  { site: Type.Optional(RefSchema) },
  { additionalProperties: false },
);
export const ListOf = <T extends TSchema>(t: T) => Type.Array(t);
