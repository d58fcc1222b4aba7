// Worker-thread entry for a share of a restore: reads its frames straight from the local datastore's
// pack files, decompresses, checks every block against its address, and writes to the target.
import { closeSync, constants, openSync, readSync } from "node:fs";
import path from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { BLOCK_SIZE, FRAME_MAX_BLOCKS, paths } from "../datastore/format.ts";
import { openFrame } from "../datastore/pack.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { answerOf } from "../platform/workers.ts";
import { applyFrame, type RestoreJob } from "./restore.ts";

const job = workerData as RestoreJob;
const packs = new Map<string, number>();
// one buffer for the frame as read and one for it decompressed, for every frame: a new pair per frame
// was ~2 GB of short-lived memory for a 2 GiB disk, and V8's collector worked through it
let payloadBuf = Buffer.allocUnsafeSlow(FRAME_MAX_BLOCKS * BLOCK_SIZE);
const rawBuf = Buffer.allocUnsafeSlow(FRAME_MAX_BLOCKS * BLOCK_SIZE);
let fd = -1;
const answer = answerOf(() => {
  fd = openSync(job.target, constants.O_WRONLY);
  let written = 0;
  for (const t of job.tasks) {
    let pfd = packs.get(t.packId);
    if (pfd === undefined) {
      try {
        pfd = openSync(path.join(job.root, paths.pack(t.packId)), "r");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          throw new SwitchbackError("DATASTORE_CORRUPT", `pack ${t.packId} is missing from the datastore`);
        }
        throw err;
      }
      packs.set(t.packId, pfd);
    }
    if (payloadBuf.length < t.frameLength) payloadBuf = Buffer.allocUnsafeSlow(t.frameLength);
    const payload = payloadBuf.subarray(0, t.frameLength);
    const n = readSync(pfd, payload, 0, t.frameLength, t.frameOffset);
    if (n !== t.frameLength) {
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `pack ${t.packId}: frame @${t.frameOffset} is cut short (${n} of ${t.frameLength} bytes)`,
      );
    }
    const raw = openFrame(
      payload,
      t.compression,
      t.frameBlocks,
      `pack ${t.packId} frame @${t.frameOffset}`,
      rawBuf,
    );
    written += applyFrame(raw, t, fd, job.size, job.expect);
  }
  return written;
});
if (fd >= 0) closeSync(fd);
for (const p of packs.values()) closeSync(p);
parentPort!.postMessage(answer);
