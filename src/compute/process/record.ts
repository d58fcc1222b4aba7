// instance.json: everything the `process` provider needs to find, boot, stop and remove an instance
// after a vault restart (it keeps no other memory). Replaced atomically (temporary file, fsync, rename,
// fsync of the folder), so a crash leaves the old record or the new one, never half of one.
// exit.json: how the last run ended, written by the provider process that saw it end.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { SwitchbackError } from "../../domain/errors.ts";

const DiskSpecSchema = Type.Union([
  Type.Object({
    from: Type.Literal("point"),
    datastore: Type.String(),
    item: Type.String(),
    point: Type.String(),
    diskUuid: Type.String(),
    sizeBytes: Type.Integer({ minimum: 1 }),
  }),
  Type.Object({ from: Type.Literal("clone"), path: Type.String() }),
  Type.Object({ from: Type.Literal("adopt"), path: Type.String() }),
  Type.Object({
    from: Type.Literal("blank"),
    sizeBytes: Type.Integer({ minimum: 1 }),
    filesystem: Type.Optional(Type.Union([Type.Literal("ext4"), Type.Literal("xfs")])),
  }),
]);

const Address = Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}$" });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });

export const InstanceNetworkSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9._-]{1,64}$" })),
    ip: Type.Optional(Address),
    subnet: Type.Optional(Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$" })),
    drill: Type.Optional(Type.Boolean()),
    publicPort: Type.Optional(Port),
    servicePort: Type.Optional(Port),
  },
  { additionalProperties: false },
);

export const InstanceSpecSchema = Type.Object({
  id: Type.String({ pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$" }),
  name: Type.String({ minLength: 1 }),
  disks: Type.Array(DiskSpecSchema, { minItems: 1 }),
  bootCommand: Type.Union([Type.String(), Type.Null()]),
  env: Type.Optional(Type.Record(Type.String(), Type.String())),
  network: Type.Optional(InstanceNetworkSchema),
  mounts: Type.Optional(
    Type.Array(
      Type.Object({
        disk: Type.Integer({ minimum: 0 }),
        at: Type.String({ pattern: "^/([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$" }),
      }),
    ),
  ),
});

const PointSchema = Type.Object({ datastore: Type.String(), item: Type.String(), point: Type.String() });

export const DiskRecordSchema = Type.Object({
  path: Type.String(),
  /** the image file is complete (a disk that is not is made again on resume) */
  ready: Type.Boolean(),
  /** how it was made */
  method: Type.Union([
    Type.Literal("restore"),
    Type.Literal("reflink"),
    Type.Literal("sparse-copy"),
    Type.Literal("in-place"),
    Type.Literal("blank"),
    Type.Null(),
  ]),
  /** the point the disk holds, when it was made from one or rewritten to one */
  point: Type.Union([PointSchema, Type.Null()]),
  /** the disk's uuid in its item's points, when known */
  diskUuid: Type.Union([Type.String(), Type.Null()]),
});

export const RunSchema = Type.Object({
  pid: Type.Integer(),
  startTime: Type.String(),
  startedAt: Type.String(),
});

/** A privileged run's attachments: released (namespace deleted, loops detached) once its processes are gone. */
export const AttachSchema = Type.Object({
  netns: Type.String(),
  network: Type.String(),
  ip: Type.String(),
  loops: Type.Array(Type.String()),
});
export type Attach = Static<typeof AttachSchema>;

export const InstanceRecordSchema = Type.Object({
  version: Type.Literal(1),
  provider: Type.Literal("process"),
  spec: InstanceSpecSchema,
  /** creating: disks being made; ready; changing-point: a rewrite that has not finished (no boot until it has) */
  phase: Type.Union([Type.Literal("creating"), Type.Literal("ready"), Type.Literal("changing-point")]),
  disks: Type.Array(DiskRecordSchema),
  /** the current or last run */
  run: Type.Union([RunSchema, Type.Null()]),
  /** when a change of point last began to rewrite the disks (ISO 8601) */
  rewrittenAt: Type.Optional(Type.String()),
  /** privileged mode: the current or last run's namespace, address and loop devices */
  attach: Type.Optional(Type.Union([AttachSchema, Type.Null()])),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type InstanceRecord = Static<typeof InstanceRecordSchema>;
export type DiskRecord = Static<typeof DiskRecordSchema>;

export const ExitSchema = Type.Object({
  pid: Type.Integer(),
  startTime: Type.String(),
  exitCode: Type.Union([Type.Integer(), Type.Null()]),
  signal: Type.Union([Type.String(), Type.Null()]),
  at: Type.String(),
});
export type ExitRecord = Static<typeof ExitSchema>;

export function readRecord(file: string): InstanceRecord | null {
  const raw = readJson(file);
  if (raw === undefined) return null;
  if (!Value.Check(InstanceRecordSchema, raw)) {
    const e = [...Value.Errors(InstanceRecordSchema, raw)][0];
    throw new SwitchbackError(
      "INSTANCE_RECORD_CORRUPT",
      `instance record ${file} does not match its schema (${e ? `${e.path || "/"}: ${e.message}` : "?"}); fix or remove the instance's folder`,
    );
  }
  return raw;
}

/** exit.json, or null when it is missing or unreadable (it is information, not state). */
export function readExit(file: string): ExitRecord | null {
  try {
    const raw = readJson(file);
    return Value.Check(ExitSchema, raw) ? raw : null;
  } catch {
    return null;
  }
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new SwitchbackError(
      "INSTANCE_RECORD_CORRUPT",
      `${file} is not valid JSON (${(err as Error).message}); fix or remove the instance's folder`,
    );
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  fsyncPath(tmp);
  renameSync(tmp, file);
  fsyncPath(path.dirname(file));
}

export function fsyncPath(p: string): void {
  const fd = openSync(p, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
