// The vault's tables as Kysely sees them: the one typed description of the database that every query
// goes through. Portable on SQLite and PostgreSQL: times are ISO 8601 UTC text (they sort as text),
// JSON documents are text (parsed at the boundary with a schema), booleans are 0/1 integers, sizes
// are numbers (JavaScript numbers hold byte counts exactly up to 8 PiB). Migrations live in
// `migrations.ts`, numbered; a column added there is added here in the same commit.
import type { Generated, Insertable, Selectable, Updateable } from "kysely";

export interface SitesTable {
  id: string;
  name: string;
  /** subnet of the site's network, e.g. 10.10.0.0/24 (used by the privileged provider) */
  subnet: string | null;
  created_at: string;
}

export interface AppliancesTable {
  id: string;
  name: string;
  site_id: string;
  /** JSON array of roles: "process-server", "master-target" */
  roles: string;
  /** where agents reach its process server (http://127.0.0.1:PORT) */
  url: string | null;
  /** "in-process" for the embedded one, "remote" for a separate `switchback appliance` */
  kind: string;
  last_heartbeat_at: string | null;
  created_at: string;
  /** a registered `switchback appliance` process: its control API (null: not registered) */
  control_url: string | null;
  /** the bearer the vault presents at the control API; the appliance makes a new one each start */
  control_secret: string | null;
}

export interface DatastoresTable {
  id: string;
  name: string;
  site_id: string;
  /** "local" now; "s3" and "azure-blob" later */
  kind: string;
  location: string;
  capacity_bytes: number | null;
  used_bytes: number | null;
  last_seen_at: string | null;
  created_at: string;
  /** the remote appliance that serves it, on its own host (null: on the vault's host, in-process) */
  appliance_id: string | null;
}

export interface PoliciesTable {
  id: string;
  name: string;
  rpo_threshold_s: number;
  retention_s: number;
  app_consistent_every_s: number;
  crash_consistent_every_s: number;
  /** set on a failback policy derived on reprotect: the policy it was derived from */
  derived_from: string | null;
  created_at: string;
}

export interface MachinesTable {
  /** the agent's machine id (from the identity on the machine's own disk) */
  id: string;
  name: string;
  /** the site the machine runs at now, as last reported */
  site_id: string | null;
  /** the compute instance that runs it, when a provider of ours does */
  instance_id: string | null;
  hostname: string | null;
  os: string | null;
  cpus: number | null;
  memory_bytes: number | null;
  /** JSON array: { uuid, path, sizeBytes, sectorSize, role: "os" | "data" } */
  disks: string;
  /** JSON array: { name, mac, addresses: string[] } */
  nics: string;
  /** the command a `process` provider boots the machine with (null: not ours to boot) */
  boot_command: string | null;
  /** JSON MachineLayout (src/vault/http/schemas.ts): file systems, mount points, home address; null: none given */
  layout: string | null;
  /** "running" | "stopped" | "gone" | "unknown" */
  power_state: string;
  last_heartbeat_at: string | null;
  /** agent-reported replication progress: JSON { bytesDone, bytesTotal, bytesPerSecond, at } */
  replication: string | null;
  created_at: string;
  updated_at: string;
}

export interface ItemsTable {
  id: string;
  name: string;
  machine_id: string;
  /** the site the machine was first protected from (failback returns here) */
  home_site_id: string;
  source_site_id: string;
  target_site_id: string;
  policy_id: string;
  process_server_id: string;
  master_target_id: string | null;
  datastore_id: string;
  /** lifecycle state (src/domain/lifecycle.ts), JSON */
  state: string;
  generation: number;
  /** JSON: target name, cpus, memoryBytes, network, subnet, ip, testNetwork, disks roles */
  target_settings: string;
  /** JSON: the failover in progress or done (point, instance, source shut down or not) */
  failover: string | null;
  /** JSON: the drill in progress (instance, point) */
  drill: string | null;
  last_point_id: string | null;
  last_point_at: string | null;
  last_app_point_id: string | null;
  last_app_point_at: string | null;
  resync_required: number;
  /** the seed point reprotect took from the disks at the returning site (not a recovery point) */
  seed_point_id: string | null;
  /** JSON: what the agent reported of the last point (mode, bytes sent, duration) */
  last_point_report: string | null;
  /** optimistic concurrency: every update bumps it */
  version: number;
  created_at: string;
  updated_at: string;
}

export interface InstancesTable {
  id: string;
  item_id: string | null;
  machine_id: string | null;
  site_id: string;
  /** "production" | "drill" | "failover" | "seed" */
  purpose: string;
  provider: string;
  /** provider-specific JSON (folder, pid, disks) */
  provider_state: string;
  created_at: string;
  deleted_at: string | null;
}

export interface JobsTable {
  id: string;
  kind: string;
  item_id: string | null;
  plan_id: string | null;
  /** "queued" | "running" | "waiting" | "succeeded" | "failed" | "cancelled" */
  state: string;
  /** while state is "waiting": the name of the signal the current step waits for */
  waiting_for: string | null;
  /** JSON parameters, validated by the job kind's schema */
  params: string;
  /** index of the step the job is on */
  step: number;
  /** 0..1 */
  progress: number;
  error_code: string | null;
  error_message: string | null;
  lease_owner: string | null;
  lease_until: string | null;
  created_by: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface JobStepsTable {
  job_id: string;
  idx: number;
  name: string;
  /** "pending" | "running" | "waiting" | "succeeded" | "failed" | "skipped" */
  state: string;
  /** JSON the step returned (read by later steps) */
  output: string | null;
  started_at: string | null;
  finished_at: string | null;
  attempts: number;
}

/** A signal sent to a job (an approval, an answer); a step's waitFor(name) reads it, even after a restart. */
export interface JobSignalsTable {
  job_id: string;
  name: string;
  /** JSON data sent with the signal */
  data: string;
  at: string;
}

export interface JobLogsTable {
  id: Generated<number>;
  job_id: string;
  at: string;
  level: string;
  step: number | null;
  message: string;
  /** JSON details */
  data: string | null;
}

export interface AlertsTable {
  id: string;
  /** "rpo-breach" | "replication-stalled" | "agent-lost" | "appliance-lost" | "job-failed" */
  kind: string;
  /** what it is about: "item:<id>", "machine:<id>", "appliance:<id>", "job:<id>" */
  subject: string;
  severity: string;
  message: string;
  raised_at: string;
  cleared_at: string | null;
  delivered_at: string | null;
  delivery_error: string | null;
  /** a vault process is sending the pending event (or waits out a failed attempt's backoff) until then */
  sending_until: string | null;
}

export interface PlansTable {
  id: string;
  name: string;
  /** JSON: groups (items, pre/post actions), continueOnError */
  definition: string;
  created_at: string;
  updated_at: string;
}

export interface TokensTable {
  id: string;
  name: string;
  /** "admin" | "viewer" | "agent" | "enrol" | "appliance" */
  role: string;
  /** SHA-256 hex of the token; the token itself is shown once */
  sha256: string;
  machine_id: string | null;
  created_at: string;
  last_used_at: string | null;
  /** agent tokens: the site (and instance) of the copy of the machine that registered with it */
  site_id: string | null;
  instance_id: string | null;
  /** the name of the token that created it (POST /v1/tokens); null for the vault's own */
  created_by: string | null;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface AgentCommandsTable {
  id: string;
  machine_id: string;
  /** the copy of the machine it is for: the site it runs at (null: whichever copy asks) */
  site_id: string | null;
  /** "point-now" | "shutdown" */
  kind: string;
  /** JSON */
  params: string;
  job_id: string | null;
  created_at: string;
  delivered_at: string | null;
  finished_at: string | null;
  /** JSON CommandResult */
  result: string | null;
}

/**
 * An item's RPO by the minute (src/vault/rpo-history.ts): one row per minute in which a point of the
 * item was committed. Kept for RPO_HISTORY_KEEP_HOURS, whatever retention does to the points.
 */
export interface RpoHistoryTable {
  item_id: string;
  /** the start of the minute, ISO 8601 UTC (seconds and milliseconds zero) */
  minute: string;
  /** the worst RPO seen in the minute: a commit's time minus the newest point before it */
  peak_rpo_s: number;
  /** the newest point (its creation time) committed by the end of the minute */
  last_point_at: string;
}

export interface VaultDatabase {
  sites: SitesTable;
  appliances: AppliancesTable;
  datastores: DatastoresTable;
  policies: PoliciesTable;
  machines: MachinesTable;
  items: ItemsTable;
  instances: InstancesTable;
  jobs: JobsTable;
  job_steps: JobStepsTable;
  job_signals: JobSignalsTable;
  job_logs: JobLogsTable;
  alerts: AlertsTable;
  plans: PlansTable;
  tokens: TokensTable;
  settings: SettingsTable;
  agent_commands: AgentCommandsTable;
  rpo_history: RpoHistoryTable;
}

export type SiteRow = Selectable<SitesTable>;
export type ApplianceRow = Selectable<AppliancesTable>;
export type DatastoreRow = Selectable<DatastoresTable>;
export type PolicyRow = Selectable<PoliciesTable>;
export type MachineRow = Selectable<MachinesTable>;
export type ItemRow = Selectable<ItemsTable>;
export type NewItem = Insertable<ItemsTable>;
export type ItemUpdate = Updateable<ItemsTable>;
export type InstanceRow = Selectable<InstancesTable>;
export type JobRow = Selectable<JobsTable>;
export type JobStepRow = Selectable<JobStepsTable>;
export type JobSignalRow = Selectable<JobSignalsTable>;
export type JobLogRow = Selectable<JobLogsTable>;
export type AlertRow = Selectable<AlertsTable>;
export type PlanRow = Selectable<PlansTable>;
export type TokenRow = Selectable<TokensTable>;
export type AgentCommandRow = Selectable<AgentCommandsTable>;
export type RpoHistoryRow = Selectable<RpoHistoryTable>;
