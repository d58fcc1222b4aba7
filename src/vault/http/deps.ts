// What the vault's routes need from the rest of the vault, passed in once by buildVaultApp: the
// database, the clock, and the seams other parts fill (the agent's assignment comes from the job
// engine). A new area that needs something adds a field here; routes never reach for globals.
import type { Assignment } from "../../agent/protocol.ts";
import type { VaultDb } from "../db/database.ts";
import type { DrRuntime } from "../dr.ts";
import type { AgentHeartbeat } from "./schemas.ts";

export interface VaultDeps {
  vdb: VaultDb;
  /** the vault's clock; tests pass a fixed one */
  now(): Date;
  /** how often agents and appliances heartbeat; 3 missed ones count as lost */
  heartbeatIntervalMs: number;
  /**
   * What the agent of this machine should do now: the answer to every heartbeat, called after the
   * heartbeat's properties are stored. The heartbeat itself is passed for what the agent reports
   * beyond properties (command results, the last point, the instance this copy runs in).
   */
  /** `tokenSite`: the site of the copy the agent's token was registered from (null: unknown) */
  assignmentFor(
    machineId: string,
    heartbeat?: AgentHeartbeat,
    tokenSite?: string | null,
  ): Promise<Assignment>;
  /** the disaster-recovery runtime (sites, jobs, operations), once its service started */
  dr?: DrRuntime;
}

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 15_000;

/** Until the job engine assigns work, an agent is told to replicate nothing. */
export async function noAssignment(_machineId: string): Promise<Assignment> {
  return { replicate: null, commands: [] };
}
