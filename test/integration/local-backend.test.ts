// The local backend against a real folder: atomic writes, listing hides temporaries, and reads of an
// object replaced under the same name see the new bytes (prune replaces manifests in place).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { LocalBackend } from "../../src/datastore/local/local-backend.ts";
import { giveBack, takeAligned } from "../../src/platform/aligned.ts";
import { native } from "../../src/platform/native.ts";
import { tempDir } from "../helpers/env.ts";

test("a replaced object reads back new bytes, also through ranged reads", async () => {
  const { dir, cleanup } = tempDir();
  const be = new LocalBackend(dir);
  try {
    await be.write("points/web1/p.point", Buffer.from("first version, longer than the second"));
    assert.equal((await be.readRange("points/web1/p.point", 0, 5)).toString(), "first");
    await be.write("points/web1/p.point", Buffer.from("second"));
    assert.equal((await be.readRange("points/web1/p.point", 0, 6)).toString(), "second");
    await be.write("packs/ab/abc.pack", Buffer.from("pack bytes"));
    assert.equal((await be.readRange("packs/ab/abc.pack", 5, 5)).toString(), "bytes");
    await assert.rejects(be.readRange("packs/ab/abc.pack", 5, 50), /short read/);
    // whole reads come in one read of the object's size
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    await be.write("index/big.idx", big);
    assert.ok((await be.read("index/big.idx")).equals(big));
    // a marker written without fsyncs is as visible and atomic; so is its removal
    await be.write("locks/l.json", Buffer.from("{}"), { durable: false });
    assert.equal((await be.read("locks/l.json")).toString(), "{}");
    assert.deepEqual(await be.list("locks"), ["l.json"], "no temporary file left beside it");
    await be.remove("locks/l.json", { durable: false });
    assert.equal(await be.exists("locks/l.json"), false);
  } finally {
    await be.close();
    cleanup();
  }
});

test("publish decides whether a written object becomes visible, after its bytes are all written", async () => {
  const { dir, cleanup } = tempDir();
  const be = new LocalBackend(dir);
  const name = "points/web1/p.point";
  async function* pieces() {
    yield Buffer.from("head ");
    yield Buffer.from("tail");
  }
  try {
    // declined: nothing is written, nothing is left behind
    await be.write(name, pieces(), {
      publish: async () => {
        const tmp = (await be.listTemporary("")).map((t) => readFileSync(path.join(dir, t), "utf8"));
        assert.deepEqual(tmp, ["head tail"], "the whole object is written when publish is asked");
      },
    });
    assert.equal(await be.exists(name), false);
    assert.deepEqual(await be.listTemporary(""), []);
    // refused: write throws what publish threw
    await assert.rejects(
      be.write(name, Buffer.from("x"), {
        publish: async () => {
          throw new Error("not any more");
        },
      }),
      /not any more/,
    );
    assert.equal(await be.exists(name), false);
    assert.deepEqual(await be.listTemporary(""), []);
    // made visible: by the time make resolves, the object reads back
    await be.write(name, pieces(), {
      publish: async (make) => {
        await make();
        assert.equal((await be.read(name)).toString(), "head tail");
      },
    });
    assert.deepEqual(await be.list("points/web1"), ["p.point"]);
  } finally {
    await be.close();
    cleanup();
  }
});

test("listing hides interrupted writes; removing is idempotent", async () => {
  const { dir, cleanup } = tempDir();
  const be = new LocalBackend(dir);
  try {
    await be.write("index/a.idx", Buffer.from("a"));
    writeFileSync(path.join(dir, "index", "b.idx.tmp-123456"), "half");
    assert.deepEqual(await be.list("index"), ["a.idx"]);
    assert.deepEqual(await be.listTemporary(""), ["index/b.idx.tmp-123456"]);
    await be.remove("index/a.idx");
    await be.remove("index/a.idx");
    assert.deepEqual(await be.list("index"), []);
    assert.deepEqual(await be.list("nothing-here"), []);
  } finally {
    await be.close();
    cleanup();
  }
});

test("big objects are written with O_DIRECT where the file system takes it, and read back whole either way", async (t) => {
  const big = randomBytes(3 * 1024 * 1024 + 1234); // not a whole number of 4 KiB blocks: the tail goes buffered
  const parts = [big.subarray(0, 1000), big.subarray(1000, 2_000_000), big.subarray(2_000_000)];
  const check = async (dir: string): Promise<number> => {
    const be = new LocalBackend(dir);
    try {
      await be.write("packs/aa/one.pack", parts);
      await be.write("packs/aa/two.pack", big.subarray(0, 2 * 1024 * 1024)); // whole blocks: no tail
      await be.write("packs/aa/small.pack", big.subarray(0, 5000)); // below the O_DIRECT threshold
      assert.ok(readFileSync(path.join(dir, "packs/aa/one.pack")).equals(big));
      assert.ok(
        (await be.readRange("packs/aa/two.pack", 0, 2 * 1024 * 1024)).equals(
          big.subarray(0, 2 * 1024 * 1024),
        ),
      );
      assert.ok(readFileSync(path.join(dir, "packs/aa/small.pack")).equals(big.subarray(0, 5000)));
      assert.deepEqual(await be.listTemporary(""), []);
      // an object written as it comes: whole aligned MiBs (O_DIRECT where it can), an odd piece, an
      // aligned MiB after it (at an odd offset now: the ordinary way), and a tail
      const mib = 1024 * 1024;
      const aligned = takeAligned(2 * mib);
      big.copy(aligned, 0, 0, 2 * mib);
      const want = Buffer.concat([
        aligned.subarray(0, mib),
        big.subarray(0, 1000),
        aligned.subarray(mib),
        big.subarray(7, 99),
      ]);
      const st = await be.begin!("packs");
      await st.append(aligned.subarray(0, mib));
      await st.append(big.subarray(0, 1000));
      await st.append(aligned.subarray(mib));
      assert.equal((await be.listTemporary("packs")).length, 1, "not visible before it is finished");
      assert.deepEqual(await be.list("packs/bb"), []);
      await st.finish("packs/bb/three.pack", big.subarray(7, 99));
      assert.ok(readFileSync(path.join(dir, "packs/bb/three.pack")).equals(want));
      assert.deepEqual(await be.list("packs/bb"), ["three.pack"]);
      // appends made at once land in the order they were made
      const four = await be.begin!("packs");
      const quarter = mib / 4;
      await Promise.all(
        Array.from({ length: 4 }, (_, i) => four.append(aligned.subarray(i * quarter, (i + 1) * quarter))),
      );
      await four.finish("packs/bb/four.pack", Buffer.alloc(0));
      assert.ok(readFileSync(path.join(dir, "packs/bb/four.pack")).equals(aligned.subarray(0, mib)));
      // one given up leaves nothing
      const gone = await be.begin!("packs");
      await gone.append(aligned.subarray(0, mib));
      await gone.abort();
      giveBack(aligned);
      assert.deepEqual(await be.listTemporary(""), []);
      return be.directWrites;
    } finally {
      await be.close();
    }
  };
  const disk = tempDir();
  try {
    const direct = await check(disk.dir);
    // ext4, xfs and btrfs take O_DIRECT; the addon aligns the memory
    if (native !== null && /^(ext4|xfs|btrfs)$/.test(fsType(disk.dir))) assert.equal(direct, 2);
    else
      t.diagnostic(
        `O_DIRECT not expected here (addon ${native === null ? "absent" : "loaded"}, ${fsType(disk.dir)})`,
      );
  } finally {
    disk.cleanup();
  }
  // ramfs refuses O_DIRECT at open (tmpfs takes it since Linux 6.6): the backend falls back to ordinary
  // writes and says nothing. Mounting one takes root.
  if (process.getuid?.() !== 0) {
    t.diagnostic("the fallback on a file system without O_DIRECT (ramfs) is tested as root only");
    return;
  }
  const ram = tempDir();
  execFileSync("mount", ["-t", "ramfs", "ramfs", ram.dir]);
  try {
    assert.equal(await check(ram.dir), 0);
  } finally {
    execFileSync("umount", [ram.dir]);
    ram.cleanup();
  }
});

function fsType(dir: string): string {
  let best = { at: "", type: "unknown" };
  for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
    const [, at, type] = line.split(" ");
    if (
      at !== undefined &&
      type !== undefined &&
      (dir === at || dir.startsWith(at === "/" ? "/" : `${at}/`)) &&
      at.length >= best.at.length
    )
      best = { at, type };
  }
  return best.type;
}

// readPoint reads a manifest in pieces while prune may replace it with an equivalent one: the pieces
// must all come from the file as it was opened, never half from each (that read as damage).
test("a stream reads the object as it was when opened, even when it is replaced between pieces", async () => {
  const { dir, cleanup } = tempDir();
  const be = new LocalBackend(dir);
  try {
    const first = randomBytes(3 * 1024 * 1024 + 17);
    await be.write("points/web1/p.point", first);
    const { size, pieces } = await be.readStream("points/web1/p.point", 1024 * 1024);
    assert.equal(size, first.length);
    const got: Buffer[] = [];
    for await (const piece of pieces) {
      got.push(piece);
      if (got.length === 1) await be.write("points/web1/p.point", randomBytes(2 * 1024 * 1024));
    }
    assert.deepEqual(
      got.map((p) => p.length),
      [1048576, 1048576, 1048576, 17],
    );
    assert.ok(Buffer.concat(got).equals(first), "the pieces are the first version's");
  } finally {
    await be.close();
    cleanup();
  }
});
