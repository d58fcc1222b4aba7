// The identity label on block 0 of an OS disk, and the identity file of privileged machines.
import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync, readSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import {
  ensureIdentity,
  LABEL_BYTES,
  newIdentity,
  readIdentityFile,
  readIdentityLabel,
  writeIdentityFile,
  writeIdentityLabel,
} from "../../src/agent/identity.ts";
import { SwitchbackError } from "../../src/domain/errors.ts";
import { tempDir } from "../helpers/env.ts";
import { randomBuffer, rng } from "../helpers/images.ts";

const { dir, cleanup } = tempDir("sb-identity-");
after(cleanup);

let n = 0;
function blankDisk(bytes = 1024 * 1024): string {
  const p = path.join(dir, `disk-${n++}.img`);
  writeFileSync(p, "");
  truncateSync(p, bytes);
  return p;
}

function code(err: unknown): string {
  return err instanceof SwitchbackError ? err.code : String(err);
}

describe("identity label", () => {
  test("round trip: what is written reads back, and only block 0 changes", () => {
    const disk = blankDisk();
    const fd = openSync(disk, "r+");
    const tail = randomBuffer(8192, rng(5));
    writeSync(fd, tail, 0, tail.length, LABEL_BYTES); // blocks 1 and 2 hold data
    closeSync(fd);
    const id = newIdentity("web1", 2);
    writeIdentityLabel(disk, id);
    assert.deepEqual(readIdentityLabel(disk), id);
    const after = readFileSync(disk);
    assert.ok(after.subarray(LABEL_BYTES, LABEL_BYTES + tail.length).equals(tail));
    assert.equal(after.subarray(0, 8).toString("latin1"), "SWBKID01");
  });

  test("a blank disk has no label", () => {
    assert.equal(readIdentityLabel(blankDisk()), null);
  });

  test("a flipped byte in the label is IDENTITY_LABEL_CORRUPT naming the disk", () => {
    const disk = blankDisk();
    writeIdentityLabel(disk, newIdentity("db1", 1));
    const good = readFileSync(disk);
    const jsonEnd = 16 + good.readUInt32LE(12);
    // a byte of the JSON, a byte of the checksum, and the length field
    const damage: [string, (b: Buffer) => void][] = [
      [
        "json",
        (b) => {
          b[20] = b[20]! ^ 0x01;
        },
      ],
      [
        "checksum",
        (b) => {
          b[jsonEnd + 5] = b[jsonEnd + 5]! ^ 0x80;
        },
      ],
      ["length", (b) => void b.writeUInt32LE(5000, 12)],
    ];
    for (const [what, flip] of damage) {
      const copy = path.join(dir, `flip-${what}.img`);
      const b = Buffer.from(good);
      flip(b);
      writeFileSync(copy, b);
      assert.throws(
        () => readIdentityLabel(copy),
        (err: unknown) => code(err) === "IDENTITY_LABEL_CORRUPT" && (err as Error).message.includes(copy),
        what,
      );
    }
  });

  test("every single flipped bit of the covered bytes is detected", () => {
    const disk = blankDisk(LABEL_BYTES);
    writeIdentityLabel(disk, newIdentity("app", 3));
    const good = readFileSync(disk);
    const covered = 16 + good.readUInt32LE(12) + 32;
    const fd = openSync(disk, "r+");
    try {
      for (let i = 8; i < covered; i++) {
        const bad = Buffer.from(good);
        bad[i] = bad[i]! ^ (1 << (i % 8));
        writeSync(fd, bad, 0, LABEL_BYTES, 0);
        assert.throws(
          () => readIdentityLabel(disk),
          (err: unknown) => ["IDENTITY_LABEL_CORRUPT", "IDENTITY_LABEL_VERSION"].includes(code(err)),
          `byte ${i}`,
        );
      }
    } finally {
      closeSync(fd);
    }
  });

  test("block 0 holding other data (a boot sector) is never overwritten", () => {
    const disk = blankDisk();
    const fd = openSync(disk, "r+");
    writeSync(fd, Buffer.from([0x55, 0xaa]), 0, 2, 510);
    closeSync(fd);
    assert.equal(readIdentityLabel(disk), null);
    assert.throws(
      () => ensureIdentity([disk], "legacy"),
      (err: unknown) => code(err) === "IDENTITY_BLOCK_IN_USE",
    );
    const b = Buffer.alloc(2);
    const rfd = openSync(disk, "r");
    readSync(rfd, b, 0, 2, 510);
    closeSync(rfd);
    assert.deepEqual([...b], [0x55, 0xaa]);
  });

  test("a disk smaller than a label is refused", () => {
    const disk = blankDisk(1024);
    assert.throws(
      () => readIdentityLabel(disk),
      (err: unknown) => code(err) === "IDENTITY_DISK_TOO_SMALL",
    );
  });

  test("ensureIdentity creates once, then finds the same identity; a new disk gains a uuid", () => {
    const os = blankDisk();
    const data = blankDisk();
    const first = ensureIdentity([os], "web2");
    assert.equal(first.created, true);
    assert.equal(first.identity.name, "web2");
    assert.equal(first.identity.disks.length, 1);
    const again = ensureIdentity([os], "renamed");
    assert.equal(again.created, false);
    assert.deepEqual(again.identity, first.identity);
    const grown = ensureIdentity([os, data], "web2");
    assert.equal(grown.identity.machineId, first.identity.machineId);
    assert.deepEqual(grown.identity.disks[0], first.identity.disks[0]);
    assert.equal(grown.identity.disks[1]!.index, 1);
    assert.deepEqual(readIdentityLabel(os), grown.identity);
    assert.equal(readIdentityLabel(data), null, "the label lives on the OS disk only");
  });
});

describe("identity file (privileged machines)", () => {
  test("round trip through an atomic write; absent is null; damaged is IDENTITY_FILE_CORRUPT", () => {
    const file = path.join(dir, "etc", "switchback", "identity.json");
    assert.equal(readIdentityFile(file), null);
    const id = newIdentity("host1", 2);
    writeIdentityFile(file, id);
    assert.deepEqual(readIdentityFile(file), id);
    writeFileSync(file, "{ not json");
    assert.throws(
      () => readIdentityFile(file),
      (err: unknown) => code(err) === "IDENTITY_FILE_CORRUPT",
    );
    writeFileSync(file, JSON.stringify({ ...id, machineId: "nope" }));
    assert.throws(
      () => readIdentityFile(file),
      (err: unknown) => code(err) === "IDENTITY_FILE_CORRUPT" && (err as Error).message.includes("machineId"),
    );
  });
});
