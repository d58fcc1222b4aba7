// restic in the benchmark: a local repository (RESTIC_PASSWORD set, cache in the run's folder, which
// is its "agent state"). "Bytes sent" is its "Added to the repository" (the JSON summary's
// data_added). Metadata is what a backup adds besides file data: the new index and snapshot files and
// the tree blobs listed in the new index files. Delta restore needs restic >= 0.17, whose restore
// rewrites only the differing parts of an existing file; older versions rewrite the whole file.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { sameContent } from "./image.ts";
import { run, versionOf } from "./run.ts";
import { freshForRestore, type Scenario, settle, step, type ToolRun, warm } from "./scenario.ts";
import { treeBytes } from "./sizes.ts";

interface Summary {
  message_type: "summary";
  data_added: number;
  total_duration: number;
}

interface IndexJson {
  packs: { blobs: { type: string; length: number }[] }[];
}

export function resticVersion(): [number, number] {
  const m = /restic (\d+)\.(\d+)/.exec(versionOf("restic", ["version"]));
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

export function resticRunner(s: Scenario): ToolRun {
  const repo = path.join(s.work, "repo");
  const env = {
    ...process.env,
    RESTIC_REPOSITORY: repo,
    RESTIC_PASSWORD: "switchback-bench",
    RESTIC_CACHE_DIR: path.join(s.work, "cache"),
  };
  const restic = (args: string[]) => run("restic", args, { env });
  const backup = () => {
    warm(s.disk);
    settle();
    const r = restic(["backup", "--json", s.disk]);
    const summary = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { message_type: string })
      .find((m): m is Summary => m.message_type === "summary");
    if (summary === undefined) throw new Error(`restic backup printed no summary:\n${r.stdout.slice(-2000)}`);
    return { ...r, summary };
  };
  const names = (dir: string) => new Set(readdirSync(path.join(repo, dir)));

  restic(["init"]);
  const full = backup();
  const storeFull = treeBytes(repo);
  s.changeDisk();
  const indexBefore = names("index");
  const snapshotsBefore = names("snapshots");
  const incr = backup();
  const storeGrowth = treeBytes(repo) - storeFull;
  let metadata = 0;
  for (const id of names("index")) {
    if (indexBefore.has(id)) continue;
    metadata += treeBytes(path.join(repo, "index", id));
    const idx = JSON.parse(restic(["cat", "index", id]).stdout) as IndexJson;
    for (const p of idx.packs) for (const b of p.blobs) if (b.type === "tree") metadata += b.length;
  }
  for (const id of names("snapshots"))
    if (!snapshotsBefore.has(id)) metadata += treeBytes(path.join(repo, "snapshots", id));

  const restoreDir = path.join(s.work, "restore");
  mkdirSync(restoreDir);
  // restic restores a file under its absolute path below --target
  const out = path.join(restoreDir, s.disk);
  freshForRestore([repo], ["restic", "version"]);
  const fr = restic(["restore", "latest", "--target", restoreDir]);
  const fullRestore = { ...step(fr), correct: sameContent(out, s.v2) };
  const notes: string[] = [];
  let deltaRestore: ToolRun["deltaRestore"] = null;
  const [major, minor] = resticVersion();
  if (major > 0 || minor >= 17) {
    copyFileSync(s.v1, out);
    warm(out);
    settle();
    const dr = restic(["restore", "latest", "--target", restoreDir]);
    deltaRestore = { ...step(dr), correct: sameContent(out, s.v2) };
  } else {
    notes.push(`restic ${major}.${minor} cannot restore onto an existing file by difference (0.17 can)`);
  }
  return {
    tool: "restic",
    full: {
      ...step(full),
      toolSeconds: full.summary.total_duration,
      sentBytes: full.summary.data_added,
      storeBytes: storeFull,
    },
    incremental: {
      ...step(incr),
      toolSeconds: incr.summary.total_duration,
      sentBytes: incr.summary.data_added,
      storeGrowthBytes: storeGrowth,
      metadataBytes: metadata,
    },
    fullRestore,
    deltaRestore,
    stateBytes: treeBytes(path.join(s.work, "cache")),
    notes,
  };
}
