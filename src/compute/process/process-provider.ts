// The `process` compute provider (docs/vault.md, "Machines in unprivileged mode"): an instance is a
// folder of disk image files plus a boot command run with `sh -c` in its own process group.
//
//   <root>/<id>/instance.json   spec, phase, disks, the current or last run (pid + /proc start time)
//   <root>/<id>/disk-<n>.img    the disks it made (adopted disks stay where they are)
//   <root>/<id>/console.log     the boot command's stdout and stderr, appended
//   <root>/<id>/exit.json       how the last run ended, when the provider that started it saw it end
//
// Invariants: the record is the only memory (a new provider object on the same root after a vault
// restart sees and stops what an old one started: liveness comes from /proc, never a child handle);
// a disk image is made under a temporary name and renamed into place, and the record says which
// disks are complete, so an interrupted create resumes; nothing boots while its disks are incomplete
// or half-way to another point; a disk the provider did not make (adopted) is never deleted.
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { Value } from "@sinclair/typebox/value";
import { SwitchbackError } from "../../domain/errors.ts";
import { KeyedTurns, Mutex } from "../../platform/turns.ts";
import { inspectDisk } from "../../replication/disk-source.ts";
import {
  applyPointSince,
  applyPointToImages,
  blankImage,
  cloneImage,
  materializePointDisk,
  resolvePoint,
} from "../images.ts";
import type { ComputeProvider, DiskSpec, InstanceInfo, InstanceSpec, PointDiskSource } from "../provider.ts";
import {
  attachMachine,
  freeAddress,
  inPrivateMounts,
  loopAttach,
  loopsRelease,
  netnsDelete,
  PRIVATE_MOUNTS,
  run,
  type SiteNetwork,
  type SiteNetworks,
} from "./netns.ts";
import { groupMembers, processAlive, procStat, signalGroup } from "./proc.ts";
import {
  type Attach,
  type DiskRecord,
  type ExitRecord,
  fsyncPath,
  type InstanceRecord,
  InstanceSpecSchema,
  readExit,
  readRecord,
  writeJsonAtomic,
} from "./record.ts";

export interface ProcessProviderOptions {
  /** DIR/sites/<site>/machines */
  root: string;
  /** merged into every boot command's environment (SWITCHBACK_VAULT, SWITCHBACK_ENROL_TOKEN, …) */
  env?: Record<string, string>;
  /**
   * Privileged mode (root): every machine gets a network namespace on one of these networks, a mount
   * namespace, and its disks as loop devices mounted as its spec's `mounts` say. Absent: unprivileged.
   */
  networks?: SiteNetworks;
  /**
   * A quicker way to make a disk from a point than restoring it from the datastore (a site's replica:
   * a copy-on-write clone and the blocks that differ); null: restore it.
   */
  pointCopy?: (
    d: Extract<DiskSpec, { from: "point" }>,
    to: string,
  ) => Promise<{ method: "reflink" | "sparse-copy"; point: string } | null>;
}

const RECORD = "instance.json";
const EXIT = "exit.json";
const CONSOLE = "console.log";
const DEFAULT_STOP_MS = 30_000;
/** after SIGKILL: a process in uninterruptible sleep (D state, stuck I/O) can take a while to die */
const KILL_WAIT_MS = 10_000;
const POLL_MS = 50;
/** the few variables of the vault's own environment a boot command needs; the rest (database passwords, tokens) stay out */
const PASS_THROUGH = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];
/** where a privileged machine keeps its identity, on its root file system */
export const IDENTITY_FILE = "etc/switchback/identity.json";
/**
 * A privileged machine's first process, inside its network and mount namespaces: mounts its disks
 * under SWITCHBACK_ROOT (shortest path first), starts the edge's port forward when it has one, then
 * becomes the boot command. A mount that fails ends the boot (console.log says why).
 */
const BOOT_WRAPPER = `set -e
IFS=";"
for m in $SWITCHBACK_MOUNTS; do
  dev="\${m%%:*}"; at="\${m#*:}"
  mkdir -p "$SWITCHBACK_ROOT$at"
  mount "$dev" "$SWITCHBACK_ROOT$at"
done
unset IFS
if [ -n "\${SWITCHBACK_FORWARD:-}" ]; then
  nsenter --net="/run/netns/\${SWITCHBACK_FORWARD%%|*}" -- "$SWITCHBACK_NODE" "$SWITCHBACK_FORWARDER" "\${SWITCHBACK_FORWARD#*|}" &
fi
exec sh -c "$SWITCHBACK_BOOT"`;

export class ProcessProvider implements ComputeProvider {
  readonly kind = "process";
  readonly root: string;
  readonly #env: Record<string, string>;
  /** one operation at a time per instance in this process */
  readonly #busy = new KeyedTurns();
  readonly #networks: SiteNetworks | null;
  readonly #pointCopy: ProcessProviderOptions["pointCopy"];
  /** addresses are chosen one machine at a time */
  readonly #allocating = new Mutex();
  /** "<network>|<address>" → the instance whose start chose it, until its record says so */
  readonly #reserved = new Map<string, string>();

  constructor(o: ProcessProviderOptions) {
    this.root = path.resolve(o.root);
    this.#env = { ...(o.env ?? {}) };
    this.#networks = o.networks ?? null;
    this.#pointCopy = o.pointCopy;
  }

  /** true in privileged mode (namespaces, loop devices) */
  get privileged(): boolean {
    return this.#networks !== null;
  }

  folderOf(id: string): string {
    checkId(id);
    return path.join(this.root, id);
  }

  async create(spec: InstanceSpec, progress?: (fraction: number) => void): Promise<InstanceInfo> {
    if (!Value.Check(InstanceSpecSchema, spec)) {
      const e = [...Value.Errors(InstanceSpecSchema, spec)][0];
      throw new SwitchbackError(
        "INSTANCE_SPEC_INVALID",
        `instance spec ${JSON.stringify((spec as { id?: unknown })?.id)} is not valid (${e ? `${e.path || "/"}: ${e.message}` : "?"})`,
      );
    }
    return this.#serial(spec.id, () => this.#create(spec, progress));
  }

  async #create(spec: InstanceSpec, progress?: (fraction: number) => void): Promise<InstanceInfo> {
    const folder = this.folderOf(spec.id);
    const file = path.join(folder, RECORD);
    let rec = readRecord(file);
    if (rec !== null) {
      if (!sameSpec(rec.spec, spec)) {
        throw new SwitchbackError(
          "INSTANCE_EXISTS",
          `instance ${spec.id} exists in ${folder} with another spec; delete it first or choose another id`,
        );
      }
      if (rec.phase !== "creating") return this.#info(rec);
    } else {
      const now = new Date().toISOString();
      rec = {
        version: 1,
        provider: "process",
        spec: structuredClone(spec),
        phase: "creating",
        disks: spec.disks.map((d, n) => ({
          path: d.from === "adopt" ? path.resolve(d.path) : path.join(folder, `disk-${n}.img`),
          ready: false,
          method: null,
          point: null,
          diskUuid: d.from === "point" ? d.diskUuid : null,
        })),
        run: null,
        createdAt: now,
        updatedAt: now,
      };
      for (const [n, d] of spec.disks.entries()) {
        // a disk kept by an earlier instance of this id (delete --keep-disks) is never overwritten
        if (d.from !== "adopt" && existsSync(rec.disks[n]!.path)) {
          throw new SwitchbackError(
            "INSTANCE_DISK_EXISTS",
            `${rec.disks[n]!.path} already exists (kept from an earlier instance ${spec.id}?); adopt it with { from: "adopt" } or remove it first`,
          );
        }
      }
      // "latest" is resolved once for all disks: disks made from different points would not be one machine
      const resolved = new Map<string, string>();
      for (const [n, d] of spec.disks.entries()) {
        if (d.from !== "point") continue;
        const key = JSON.stringify([d.datastore, d.item, d.point]);
        let point = resolved.get(key);
        if (point === undefined) {
          point = d.point === "latest" ? await resolvePoint(d) : d.point;
          resolved.set(key, point);
        }
        rec.disks[n]!.point = { datastore: d.datastore, item: d.item, point };
      }
      mkdirSync(folder, { recursive: true });
      this.#save(rec);
    }

    const sizes = spec.disks.map(specSize);
    const total = sizes.reduce((a, b) => a + b, 0) || 1;
    let before = 0;
    for (const [n, d] of spec.disks.entries()) {
      const disk = rec.disks[n]!;
      if (!disk.ready) {
        const made = await this.#makeDisk(
          d.from === "point" ? { ...d, point: disk.point!.point } : d,
          disk.path,
          (done) => progress?.((before + done) / total),
        );
        disk.method = made.method;
        disk.point = made.point;
        disk.ready = true;
        this.#save(rec);
      }
      before += sizes[n]!;
      progress?.(before / total);
    }
    rec.phase = "ready";
    this.#save(rec);
    return this.#info(rec);
  }

  /** Makes one disk under a temporary name, then renames it into place. */
  async #makeDisk(
    d: DiskSpec,
    to: string,
    onBytes: (done: number) => void,
  ): Promise<Pick<DiskRecord, "method" | "point">> {
    switch (d.from) {
      case "adopt": {
        inspectDisk(to); // it must exist and be a disk
        return { method: "in-place", point: null };
      }
      case "point":
      case "clone":
      case "blank": {
        const tmp = `${to}.partial`;
        rmSync(tmp, { force: true });
        let made: Pick<DiskRecord, "method" | "point">;
        if (d.from === "point") {
          const quick = (await this.#pointCopy?.(d, tmp)) ?? null;
          if (quick !== null) {
            made = {
              method: quick.method,
              point: { datastore: d.datastore, item: d.item, point: quick.point },
            };
          } else {
            const r = await materializePointDisk(d, tmp);
            made = { method: "restore", point: { datastore: d.datastore, item: d.item, point: r.pointId } };
          }
        } else if (d.from === "clone") {
          made = { method: await cloneImage(path.resolve(d.path), tmp, onBytes), point: null };
        } else {
          await blankImage(tmp, d.sizeBytes);
          if (d.filesystem !== undefined) await makeFilesystem(tmp, d.filesystem);
          made = { method: "blank", point: null };
        }
        renameSync(tmp, to);
        fsyncPath(path.dirname(to));
        return made;
      }
      default: {
        const never: never = d;
        throw new Error(`unknown disk source ${JSON.stringify(never)}`);
      }
    }
  }

  async start(id: string): Promise<InstanceInfo> {
    return this.#serial(id, () => this.#start(id));
  }

  async #start(id: string): Promise<InstanceInfo> {
    const rec = this.#mustRead(id);
    if (rec.phase !== "ready") {
      throw new SwitchbackError(
        "INSTANCE_NOT_READY",
        rec.phase === "creating"
          ? `instance ${id} cannot start: its disks are not all made yet; run create again to finish them`
          : `instance ${id} cannot start: a change of recovery point did not finish and its disks may be half-way; run changePoint again`,
      );
    }
    if (rec.spec.bootCommand === null) {
      throw new SwitchbackError(
        "INSTANCE_NO_BOOT_COMMAND",
        `instance ${id} has no boot command, so this provider cannot start it; create it with one`,
      );
    }
    if (rec.run !== null) {
      if (processAlive(rec.run.pid, rec.run.startTime)) return this.#info(rec);
      const left = groupMembers(rec.run.pid, rec.run.startTime);
      if (left.length > 0) {
        throw new SwitchbackError(
          "INSTANCE_LEFTOVER_PROCESSES",
          `instance ${id}: its boot command has ended but process(es) ${left.join(", ")} of its last run still run and may write to its disks; stop the instance first`,
        );
      }
    }
    const folder = this.folderOf(id);
    let disks = rec.disks.map((d) => d.path);
    const env: Record<string, string> = {};
    for (const k of PASS_THROUGH) {
      const v = process.env[k];
      if (v !== undefined) env[k] = v;
    }
    Object.assign(env, this.#env, rec.spec.env ?? {}, {
      SWITCHBACK_MACHINE_DIR: folder,
      SWITCHBACK_DISKS: disks.join(":"),
      SWITCHBACK_INSTANCE: id,
    });
    let argv = ["sh", "-c", rec.spec.bootCommand];
    if (this.#networks !== null) {
      // what the last run left (it ended by itself) goes first: its namespace, its loop devices
      await this.#release(rec);
      const attach = await this.#attach(rec, this.#networks);
      rec.attach = attach;
      this.#save(rec);
      this.#unreserve(id); // from now on its record says it holds the address
      disks = attach.loops;
      const root = path.join(folder, "root");
      mkdirSync(root, { recursive: true });
      const mounts = [...(rec.spec.mounts ?? [])].sort((a, b) => a.at.length - b.at.length);
      Object.assign(env, {
        SWITCHBACK_DISKS: disks.join(":"),
        SWITCHBACK_ROOT: root,
        SWITCHBACK_IP: attach.ip,
        SWITCHBACK_NETWORK: attach.network,
        SWITCHBACK_BOOT: rec.spec.bootCommand,
        SWITCHBACK_MOUNTS: mounts.map((m) => `${attach.loops[m.disk]}:${m.at}`).join(";"),
      });
      if (mounts.some((m) => m.at === "/")) env.SWITCHBACK_IDENTITY_FILE = path.join(root, IDENTITY_FILE);
      const fwd = forwardOf(rec.spec, this.#networks, attach.ip);
      if (fwd !== null) {
        env.SWITCHBACK_FORWARD = fwd;
        env.SWITCHBACK_NODE = process.execPath;
        env.SWITCHBACK_FORWARDER = path.join(import.meta.dirname, "forward.ts");
      }
      argv = [
        "nsenter",
        `--net=/run/netns/${attach.netns}`,
        "--",
        ...PRIVATE_MOUNTS,
        "sh",
        "-c",
        BOOT_WRAPPER,
      ];
    }
    disks.forEach((d, n) => {
      env[`SWITCHBACK_DISK_${n}`] = d;
    });

    const log = openSync(path.join(folder, CONSOLE), "a");
    let child: ReturnType<typeof spawn>;
    try {
      writeSync(log, `--- switchback: starting instance ${id} at ${new Date().toISOString()} ---\n`);
      // detached: setsid(), so the boot command leads its own process group (and session) and stop
      // can signal everything it started at once (nsenter and unshare exec: the pid stays the leader)
      child = spawn(argv[0] as string, argv.slice(1), {
        cwd: folder,
        env,
        detached: true,
        stdio: ["ignore", log, log],
      });
    } finally {
      closeSync(log);
    }
    const pid = child.pid;
    // read at once: the start time is fixed at fork, and the process cannot be reaped before the event loop runs
    const stat = pid === undefined ? null : procStat(pid);
    if (pid === undefined || stat === null) {
      const err = await new Promise<Error | null>((resolve) => {
        child.once("error", resolve);
        child.once("spawn", () => resolve(null));
      });
      throw new SwitchbackError(
        "INSTANCE_START_FAILED",
        `instance ${id}: could not start its boot command (${err?.message ?? "the process vanished at once"}); check that sh exists and the folder ${folder} is writable`,
      );
    }
    const run = { pid, startTime: stat.startTime, startedAt: new Date().toISOString() };
    child.on("exit", (code, signal) => {
      // best effort: exit.json is information for status; the instance may already be deleted, and
      // an exception thrown from this handler would take the vault down
      const rec: ExitRecord = { ...run, exitCode: code, signal, at: new Date().toISOString() };
      try {
        if (existsSync(path.join(folder, RECORD))) writeJsonAtomic(path.join(folder, EXIT), rec);
      } catch {
        /* the folder went away while the process ended */
      }
    });
    child.on("error", () => {}); // a spawn error after this point is reflected by status (not running)
    child.unref(); // the vault may exit while its machines run on
    rec.run = run;
    this.#save(rec);
    return this.#info(rec);
  }

  async stop(
    id: string,
    o: { timeoutMs?: number } = {},
  ): Promise<{ graceful: boolean; wasRunning: boolean }> {
    return this.#serial(id, async () => this.#stop(this.#mustRead(id), o.timeoutMs ?? DEFAULT_STOP_MS));
  }

  async #stop(rec: InstanceRecord, timeoutMs: number): Promise<{ graceful: boolean; wasRunning: boolean }> {
    const run = rec.run;
    if (run === null) return { graceful: true, wasRunning: false };
    const members = () => groupMembers(run.pid, run.startTime);
    const released = async (r: { graceful: boolean; wasRunning: boolean }) => {
      await this.#release(rec);
      return r;
    };
    if (members().length === 0) return released({ graceful: true, wasRunning: false });
    signalGroup(run.pid, "SIGTERM");
    if (await waitUntil(() => members().length === 0, timeoutMs))
      return released({ graceful: true, wasRunning: true });
    signalGroup(run.pid, "SIGKILL");
    if (await waitUntil(() => members().length === 0, KILL_WAIT_MS))
      return released({ graceful: false, wasRunning: true });
    throw new SwitchbackError(
      "INSTANCE_STOP_FAILED",
      `instance ${rec.spec.id}: process(es) ${members().join(", ")} of process group ${run.pid} still run ${KILL_WAIT_MS / 1000} s after SIGKILL (stuck in the kernel, e.g. on I/O); check them with ps and try again`,
    );
  }

  async status(id: string): Promise<InstanceInfo | null> {
    const rec = readRecord(path.join(this.folderOf(id), RECORD));
    return rec === null ? null : this.#info(rec);
  }

  async changePoint(
    id: string,
    from: PointDiskSource,
  ): Promise<{ blocksWritten: number; bytesWritten: number }> {
    return this.#serial(id, async () => {
      const rec = this.#mustRead(id);
      if (rec.phase === "creating") {
        throw new SwitchbackError(
          "INSTANCE_NOT_READY",
          `instance ${id}: its disks are not all made yet; run create again to finish them before changing its point`,
        );
      }
      if (rec.run !== null && groupMembers(rec.run.pid, rec.run.startTime).length > 0) {
        throw new SwitchbackError(
          "INSTANCE_RUNNING",
          `instance ${id} is running (pid ${rec.run.pid}); stop it before changing its recovery point`,
        );
      }
      await this.#release(rec);
      const base = from.base;
      // the disks still hold the base point: neither rewritten nor run since the master target read them
      const untouched =
        base !== undefined &&
        rec.phase === "ready" &&
        base.diskUuids.length === rec.disks.length &&
        (rec.rewrittenAt ?? "") < base.at &&
        // a record made after the base (disks adopted later) knows nothing of what happened before
        rec.createdAt < base.at &&
        rec.disks.every((d, n) => d.diskUuid === null || d.diskUuid === base.diskUuids[n]) &&
        (rec.run === null || rec.run.startedAt < base.at);
      rec.phase = "changing-point";
      rec.rewrittenAt = new Date().toISOString();
      this.#save(rec);
      const to = { datastore: from.datastore, item: from.item, point: from.point };
      const r = untouched
        ? await applyPointSince(
            to,
            base.point,
            rec.disks.map((d, n) => ({ path: d.path, uuid: base.diskUuids[n] as string })),
          )
        : await applyPointToImages(
            to,
            rec.disks.map((d) => ({ path: d.path, uuid: d.diskUuid })),
          );
      for (const d of rec.disks) d.point = { datastore: from.datastore, item: from.item, point: r.pointId };
      rec.phase = "ready";
      this.#save(rec);
      return { blocksWritten: r.blocksWritten, bytesWritten: r.bytesWritten };
    });
  }

  async delete(id: string, o: { keepDisks?: boolean; timeoutMs?: number } = {}): Promise<void> {
    return this.#serial(id, async () => {
      const folder = this.folderOf(id);
      const file = path.join(folder, RECORD);
      const rec = readRecord(file);
      if (rec === null) {
        // deleted already; what is left is the folder of its kept disks (delete with keepDisks):
        // deleting again removes them too (disable forgets a machine's kept disks this way)
        if (existsSync(folder)) {
          rmSync(folder, { recursive: true, force: true });
          fsyncPath(path.dirname(folder));
        }
        return;
      }
      await this.#stop(rec, o.timeoutMs ?? DEFAULT_STOP_MS);
      await this.#release(rec);
      // the disks it did not make, and with keepDisks the ones it did, stay
      const keep = new Set(
        rec.disks
          .filter((_, n) => rec.spec.disks[n]!.from === "adopt" || o.keepDisks === true)
          .map((d) => d.path),
      );
      // the record goes last: a delete interrupted half-way is found and finished by the next one
      for (const name of readdirSync(folder)) {
        const p = path.join(folder, name);
        if (name !== RECORD && !keep.has(p)) rmSync(p, { recursive: true, force: true });
      }
      rmSync(file, { force: true });
      fsyncPath(folder);
      if (readdirSync(folder).length === 0) rmSync(folder, { recursive: true, force: true });
    });
  }

  /**
   * Writes a file onto the instance's root file system (privileged mode; the machine must be stopped):
   * the root disk is attached and mounted in a mount namespace of its own, the file replaced atomically.
   */
  async writeRootFile(id: string, rel: string, content: string): Promise<void> {
    return this.#serial(id, async () => {
      const rec = this.#mustRead(id);
      const rootMount = (rec.spec.mounts ?? []).find((m) => m.at === "/");
      if (this.#networks === null || rootMount === undefined) {
        throw new SwitchbackError(
          "INSTANCE_NO_ROOT_FS",
          `instance ${id} has no root file system this provider mounts (privileged mode, a mount at "/"); write to its disk instead`,
        );
      }
      if (rec.run !== null && groupMembers(rec.run.pid, rec.run.startTime).length > 0) {
        throw new SwitchbackError(
          "INSTANCE_RUNNING",
          `instance ${id} is running; stop it before writing to its disks`,
        );
      }
      await this.#release(rec);
      const image = rec.disks[rootMount.disk]!.path;
      const dev = await loopAttach(image);
      try {
        const dir = path.join(this.folderOf(id), "root");
        mkdirSync(dir, { recursive: true });
        await inPrivateMounts(
          'mount "$1" "$2"; f="$2/$3"; mkdir -p "$(dirname "$f")"; cat > "$f.tmp"; sync "$f.tmp"; mv "$f.tmp" "$f"; sync -f "$f"; umount "$2"',
          [dev, dir, rel],
          { input: content },
        );
      } finally {
        await loopsRelease(image);
      }
    });
  }

  /** Attaches a privileged run: loop devices for its disks, its namespace on its network at its address. */
  async #attach(rec: InstanceRecord, nets: SiteNetworks): Promise<Attach> {
    const want = rec.spec.network ?? {};
    const drill = want.drill === true;
    // by name; else by subnet (among the test networks for a drill, the others otherwise); else the default
    const bySubnet =
      want.name === undefined && want.subnet !== undefined
        ? nets.networks.find((n) => n.subnet === want.subnet && n.isolated === drill)
        : undefined;
    if (want.name === undefined && want.subnet !== undefined && bySubnet === undefined) {
      throw new SwitchbackError(
        "NETWORK_NOT_FOUND",
        `instance ${rec.spec.id} asks for subnet ${want.subnet}, which no ${drill ? "test " : ""}network of site ${nets.site} has (${nets.networks.map((n) => `${n.name} ${n.subnet}`).join(", ")}); fix the item's target settings`,
      );
    }
    const name = bySubnet?.name ?? want.name ?? (drill ? nets.testNetwork : nets.defaultNetwork);
    const net = nets.networks.find((n) => n.name === name);
    if (net === undefined) {
      throw new SwitchbackError(
        "NETWORK_NOT_FOUND",
        `instance ${rec.spec.id} asks for network ${name}, which site ${nets.site} does not have (it has ${nets.networks.map((n) => n.name).join(", ")}); fix the item's target settings`,
      );
    }
    if (want.subnet !== undefined && net.subnet !== want.subnet) {
      throw new SwitchbackError(
        "SUBNET_MISMATCH",
        `instance ${rec.spec.id} asks for network ${name} and subnet ${want.subnet}, but that network's subnet is ${net.subnet}; fix the item's target settings`,
      );
    }
    const netns = `${net.netns}.${rec.spec.id}`;
    // chosen and reserved in one turn: two machines starting at once never get one address
    const ip = await this.#allocating.run(async () => {
      const ip = await this.#address(rec, net, want.ip);
      const holder = this.#holderOf(net.name, ip, rec.spec.id);
      if (holder !== null) {
        throw new SwitchbackError(
          "ADDRESS_IN_USE",
          `address ${ip} on network ${net.name} of site ${nets.site} is held by running instance ${holder}; stop it first or give instance ${rec.spec.id} another address`,
        );
      }
      this.#reserved.set(`${net.name}|${ip}`, rec.spec.id);
      return ip;
    });
    const loops: string[] = [];
    try {
      for (const d of rec.disks) loops.push(await loopAttach(d.path));
      await attachMachine(netns, net, ip);
    } catch (err) {
      for (const d of rec.disks) await loopsRelease(d.path).catch(() => {});
      this.#unreserve(rec.spec.id);
      throw err;
    }
    return { netns, network: net.name, ip, loops };
  }

  /** The address: the one asked for, else the one of its last run on this network, else the first free one. */
  async #address(rec: InstanceRecord, net: SiteNetwork, asked: string | undefined): Promise<string> {
    if (asked !== undefined) return asked;
    const prev = rec.attach ?? null;
    if (prev !== null && prev.network === net.name) return prev.ip;
    const taken = new Set<string>([net.gateway]);
    for (const [key, id] of this.#reserved) {
      const [network, ip] = key.split("|") as [string, string];
      if (network === net.name && id !== rec.spec.id) taken.add(ip);
    }
    for (const other of listFolders(this.root)) {
      if (other === rec.spec.id) continue;
      try {
        const r = readRecord(path.join(this.root, other, RECORD));
        const a = r?.attach ?? null;
        if (a !== null && a.network === net.name) taken.add(a.ip);
        const w = r?.spec.network?.ip;
        if (w !== undefined) taken.add(w);
      } catch {
        /* a damaged record names no address */
      }
    }
    return freeAddress(net.subnet, taken);
  }

  #unreserve(id: string): void {
    for (const [key, holder] of this.#reserved) if (holder === id) this.#reserved.delete(key);
  }

  /** The running instance (other than `self`) that holds `ip` on `network`, or null. */
  #holderOf(network: string, ip: string, self: string): string | null {
    const reserved = this.#reserved.get(`${network}|${ip}`);
    if (reserved !== undefined && reserved !== self) return reserved;
    for (const other of listFolders(this.root)) {
      if (other === self) continue;
      try {
        const r = readRecord(path.join(this.root, other, RECORD));
        const a = r?.attach ?? null;
        if (r === null || a === null || a.network !== network || a.ip !== ip || r.run === null) continue;
        if (groupMembers(r.run.pid, r.run.startTime).length > 0) return other;
      } catch {
        /* a damaged record holds nothing */
      }
    }
    return null;
  }

  /** Once a privileged run's processes are gone: its namespace is deleted, its loop devices detached. */
  async #release(rec: InstanceRecord): Promise<void> {
    if (this.#networks === null) return;
    if (rec.run !== null && groupMembers(rec.run.pid, rec.run.startTime).length > 0) return;
    const a = rec.attach ?? null;
    if (a !== null) await netnsDelete(a.netns);
    this.#unreserve(rec.spec.id);
    // detach by image (the loop names of the record may be another machine's by now)
    for (const d of rec.disks) if (existsSync(d.path)) await loopsRelease(d.path);
  }

  #info(rec: InstanceRecord): InstanceInfo {
    const folder = this.folderOf(rec.spec.id);
    const run = rec.run;
    const running = run !== null && processAlive(run.pid, run.startTime);
    const info: InstanceInfo = {
      id: rec.spec.id,
      state: running ? "running" : "stopped",
      pid: running ? run.pid : null,
      disks: rec.disks.map((d) => d.path),
      folder,
      startedAt: run?.startedAt ?? null,
    };
    if (this.#networks !== null) {
      const a = rec.attach ?? null;
      info.network = a === null ? null : { name: a.network, ip: a.ip, netns: a.netns };
    }
    if (!running && run !== null) {
      const exit = readExit(path.join(folder, EXIT));
      if (exit !== null && exit.pid === run.pid && exit.startTime === run.startTime)
        info.exitCode = exit.exitCode;
    }
    return info;
  }

  #mustRead(id: string): InstanceRecord {
    const file = path.join(this.folderOf(id), RECORD);
    const rec = readRecord(file);
    if (rec === null) {
      throw new SwitchbackError(
        "INSTANCE_NOT_FOUND",
        `instance ${id} does not exist under ${this.root}; create it first`,
      );
    }
    return rec;
  }

  #save(rec: InstanceRecord): void {
    rec.updatedAt = new Date().toISOString();
    writeJsonAtomic(path.join(this.folderOf(rec.spec.id), RECORD), rec);
  }

  /** Runs `fn` after the instance's previous operation in this process has ended. */
  #serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    checkId(id);
    return this.#busy.run(id, fn);
  }
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function checkId(id: string): void {
  if (!ID.test(id)) {
    throw new SwitchbackError(
      "INVALID_INSTANCE_ID",
      `instance id ${JSON.stringify(id)} is not valid; use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

function specSize(d: DiskSpec): number {
  switch (d.from) {
    case "point":
    case "blank":
      return d.sizeBytes;
    case "clone":
    case "adopt":
      try {
        return inspectDisk(d.path).sizeBytes;
      } catch {
        return 0; // making the disk reports the error
      }
    default: {
      const never: never = d;
      throw new Error(`unknown disk source ${JSON.stringify(never)}`);
    }
  }
}

function sameSpec(a: InstanceSpec, b: InstanceSpec): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v)
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

async function waitUntil(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (done()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function listFolders(root: string): string[] {
  try {
    return readdirSync(root);
  } catch {
    return [];
  }
}

async function makeFilesystem(image: string, fs: "ext4" | "xfs"): Promise<void> {
  // inode tables and the journal are written now, not by a kernel thread after the first mount
  // (that would be replicated as change after change)
  if (fs === "ext4")
    await run("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image]);
  else await run("mkfs.xfs", ["-q", "-f", image]);
}

/** "<edge netns>|<edge address>:<public port>=<machine address>:<service port>", or null without a public port. */
function forwardOf(spec: InstanceSpec, nets: SiteNetworks, ip: string): string | null {
  const n = spec.network;
  if (n?.publicPort === undefined || n.drill === true) return null;
  return `${nets.edge.netns}|${nets.edge.address}:${n.publicPort}=${ip}:${n.servicePort ?? n.publicPort}`;
}
