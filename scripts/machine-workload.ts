// A demo machine's service (./dev demo and the vault's end-to-end tests): writes numbered records to the machine's data
// disk (record n at block n) and a ring of the latest ones on its OS disk (blocks 1…RING, block 0
// is the identity label), fdatasyncs each, then appends "n" to an acknowledgement log outside the
// machine. On boot it continues after the highest valid record on its data disk, so a recovered copy
// carries on where the point it started from ends. Exits on SIGTERM after the record under way.
//   env: SWITCHBACK_DISKS (os:data), WORKLOAD_ACK (ack log path), WORKLOAD_EVERY_MS (default 20)
import { createHash } from "node:crypto";
import { appendFileSync, closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from "node:fs";

const BLOCK = 4096;
const RING = 256;
const MAGIC = "SBREC001";

export function record(n: number, site: string): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(MAGIC, 0, "latin1");
  b.writeBigUInt64LE(BigInt(n), 8);
  b.write(site.padEnd(16).slice(0, 16), 16, "latin1");
  // a payload that differs per record, so that every record is a new block for the datastore
  createHash("sha256").update(`payload ${n}`).digest().copy(b, 64);
  createHash("sha256")
    .update(b.subarray(0, BLOCK - 32))
    .digest()
    .copy(b, BLOCK - 32);
  return b;
}

/** The record number in a block, or null when the block holds no valid record. */
export function parseRecord(b: Buffer): number | null {
  if (b.toString("latin1", 0, 8) !== MAGIC) return null;
  const sum = createHash("sha256")
    .update(b.subarray(0, BLOCK - 32))
    .digest();
  if (!sum.equals(b.subarray(BLOCK - 32))) return null;
  return Number(b.readBigUInt64LE(8));
}

/** Records 1…n present in order on a data disk image: the highest n with every record before it. */
export function unbrokenPrefix(fd: number): number {
  const size = fstatSync(fd).size;
  const b = Buffer.alloc(BLOCK);
  let n = 0;
  while ((n + 2) * BLOCK <= size) {
    readSync(fd, b, 0, BLOCK, (n + 1) * BLOCK);
    if (parseRecord(b) !== n + 1) break;
    n++;
  }
  return n;
}

export function main(): void {
  const disks = (process.env.SWITCHBACK_DISKS ?? "").split(":");
  const ack = process.env.WORKLOAD_ACK as string;
  const every = Number(process.env.WORKLOAD_EVERY_MS ?? 20);
  const site = process.env.SWITCHBACK_SITE ?? "?";
  const os = openSync(disks[0] as string, "r+");
  const data = openSync(disks[1] as string, "r+");
  const capacity = Math.floor(fstatSync(data).size / BLOCK) - 1;
  let n = unbrokenPrefix(data);
  let stopping = false;
  process.on("SIGTERM", () => {
    stopping = true;
  });
  const tick = () => {
    if (stopping || n + 1 >= capacity) {
      closeSync(os);
      closeSync(data);
      process.exit(0);
    }
    n++;
    const r = record(n, site);
    writeSync(data, r, 0, BLOCK, n * BLOCK);
    writeSync(os, r, 0, BLOCK, (1 + (n % RING)) * BLOCK);
    fdatasyncSync(data);
    fdatasyncSync(os);
    appendFileSync(ack, `${n}\n`);
    setTimeout(tick, every);
  };
  tick();
}

if (process.argv[1] === import.meta.filename) main();
