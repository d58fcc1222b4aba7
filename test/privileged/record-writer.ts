// Child process for the consistency tests: appends record n to each file given, fsyncing each, and only
// then writes n to the acknowledgement log (which lives outside the file systems under test).
// Usage: node record-writer.ts ACK_LOG FILE [FILE…]; runs until SIGTERM.
import { appendFileSync, closeSync, constants, fsyncSync, openSync, writeSync } from "node:fs";
import { record } from "../helpers/privileged.ts";

const [ackLog, ...files] = process.argv.slice(2);
if (ackLog === undefined || files.length === 0) {
  process.stderr.write("usage: record-writer.ts ACK_LOG FILE [FILE…]\n");
  process.exit(2);
}
const fds = files.map((f) => openSync(f, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o644));
let stop = false;
process.on("SIGTERM", () => {
  stop = true;
});

for (let n = 1; !stop; n++) {
  const rec = Buffer.from(record(n), "latin1");
  for (const fd of fds) {
    if (writeSync(fd, rec) !== rec.length) throw new Error(`short write of record ${n}`);
    fsyncSync(fd);
  }
  appendFileSync(ackLog, `${n}\n`);
  // let the SIGTERM handler run now and then
  if (n % 16 === 0) await new Promise((r) => setImmediate(r));
}
for (const fd of fds) closeSync(fd);
