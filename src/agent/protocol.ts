// What the vault tells an agent on every heartbeat (its assignment and commands) and what the agent
// reports back about them. One schema each, shared by the vault's routes and the agent.
import { type Static, Type } from "@sinclair/typebox";

export const ReplicationAssignmentSchema = Type.Object({
  /** the replicated item, also the item name in the target's datastore */
  item: Type.String(),
  /** the target site's process server */
  processServer: Type.String(),
  /** sent with every request; the process server refuses any other (fencing) */
  generation: Type.Integer({ minimum: 1 }),
  crashEverySeconds: Type.Number({ minimum: 1 }),
  appEverySeconds: Type.Number({ minimum: 0 }),
});
export type ReplicationAssignment = Static<typeof ReplicationAssignmentSchema>;

export const AgentCommandSchema = Type.Object({
  id: Type.String(),
  /**
   * point-now: take a point out of schedule (drain before a failover or drill);
   * shutdown: stop the machine's services, optionally take a final point first, then power off
   */
  kind: Type.Union([Type.Literal("point-now"), Type.Literal("shutdown")]),
  finalPoint: Type.Optional(Type.Boolean()),
});
export type AgentCommand = Static<typeof AgentCommandSchema>;

export const AssignmentSchema = Type.Object({
  replicate: Type.Union([ReplicationAssignmentSchema, Type.Null()]),
  commands: Type.Array(AgentCommandSchema),
  /** ids of the command results in this heartbeat that the vault still waited for */
  accepted: Type.Optional(Type.Array(Type.String())),
  /** set when this copy of the machine is fenced (an older generation after a failover) */
  fenced: Type.Optional(Type.String()),
});
export type Assignment = Static<typeof AssignmentSchema>;

export const CommandResultSchema = Type.Object({
  id: Type.String(),
  ok: Type.Boolean(),
  /** point-now / shutdown with a final point: the point it took */
  pointId: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
});
export type CommandResult = Static<typeof CommandResultSchema>;

export const LastPointSchema = Type.Object({
  item: Type.String(),
  pointId: Type.String(),
  mode: Type.String(),
  consistency: Type.String(),
  bytesRead: Type.Number(),
  bytesSent: Type.Number(),
  changedBlocks: Type.Number(),
  durationMs: Type.Number(),
  maxFreezeMs: Type.Number(),
  warnings: Type.Array(Type.String()),
});
export type LastPoint = Static<typeof LastPointSchema>;
