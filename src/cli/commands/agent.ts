// switchback agent: replicate a machine's disks. Under a vault (--vault or SWITCHBACK_VAULT): register,
// heartbeat and follow the vault's assignment (docs/vault.md). Without one: to a process server on a
// schedule (docs/transport.md).

import { readFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { parseDuration } from "../../domain/duration.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import { parseItemName } from "../../domain/ids.ts";
import type { SnapshotMode } from "../../replication/replicate.ts";
import { parseSize } from "../output.ts";
import { defaultStateDir } from "./replicate-once.ts";

export function register(program: Command): void {
  program
    .command("agent")
    .description(
      "replicate a machine's disks to a process server: crash-consistent points every --crash-every, app-consistent every --app-every",
    )
    .option("--vault <url>", "run under a vault (env SWITCHBACK_VAULT): it says what to replicate where")
    .option(
      "--enrol-token <token>",
      "token to register with the vault the first time (env SWITCHBACK_ENROL_TOKEN)",
    )
    .option(
      "--name <name>",
      "the machine's name when it registers (env SWITCHBACK_MACHINE_NAME, default the host name)",
    )
    .option(
      "--site <name>",
      "the site this machine runs at, when the vault does not run it (env SWITCHBACK_SITE)",
    )
    .option(
      "--shutdown-command <cmd>",
      "how the agent shuts its machine down when the vault asks (e.g. 'systemctl poweroff')",
    )
    .option("--server <url>", "without a vault: the process server, e.g. http://10.0.0.5:7443")
    .option("--token-file <file>", "without a vault: file holding this agent's token")
    .option("--item <name>", "without a vault: the replicated item (the machine's name)")
    .option(
      "--disk <path>",
      "a disk: block device or image file (repeat for each disk, in a fixed order; env SWITCHBACK_DISKS, ':'-separated)",
      collect,
      [],
    )
    .option("--state <dir>", "agent state folder (disk identities and hashes)")
    .option("--crash-every <duration>", "take a crash-consistent point this often", "30s")
    .option("--app-every <duration>", "take an app-consistent point this often (needs --hooks)", "15m")
    .option("--hooks <dir>", "folder with pre-snapshot/post-snapshot hooks")
    .option("--hook-timeout <duration>", "time limit of each hook", "30s")
    .option("--snapshot <mode>", "how to reach one instant: auto, freeze, reflink or none", "auto")
    .option("--deadline <duration>", "how long a call to the process server keeps retrying", "60s")
    .option("--stop-timeout <duration>", "on SIGTERM, how long to let the point under way finish", "30s")
    .option(
      "--journal-buffer <size>",
      "as root: the write journal's kernel trace buffer per CPU (16K to 256M; drained between points once a quarter full)",
      "4M",
    )
    .option("--once", "take one point (retrying failures) and exit")
    .action(
      async (o: {
        vault?: string;
        enrolToken?: string;
        name?: string;
        shutdownCommand?: string;
        site?: string;
        server?: string;
        tokenFile?: string;
        item?: string;
        disk: string[];
        state?: string;
        crashEvery: string;
        appEvery: string;
        hooks?: string;
        hookTimeout: string;
        snapshot: string;
        deadline: string;
        stopTimeout: string;
        journalBuffer: string;
        once?: boolean;
      }) => {
        const env = process.env;
        const journalBuffer = parseSize(o.journalBuffer, "--journal-buffer");
        if (journalBuffer < 16 * 1024 || journalBuffer > 256 * 1024 ** 2)
          throw new SwitchbackError(
            "INVALID_OPTION",
            `--journal-buffer ${o.journalBuffer} is out of range; give 16K to 256M (per CPU)`,
          );
        const journalBufferKbPerCpu = Math.ceil(journalBuffer / 1024);
        const vault = o.vault ?? (o.server === undefined ? env.SWITCHBACK_VAULT : undefined);
        if (vault !== undefined) return runUnderVault(vault, { ...o, journalBufferKbPerCpu });
        if (
          o.server === undefined ||
          o.tokenFile === undefined ||
          o.item === undefined ||
          o.disk.length === 0
        ) {
          throw new SwitchbackError(
            "INVALID_OPTION",
            "give --vault URL (or SWITCHBACK_VAULT), or --server, --token-file, --item and --disk to replicate without a vault",
          );
        }
        const item = parseItemName(o.item);
        if (!["auto", "freeze", "reflink", "none"].includes(o.snapshot)) {
          throw new SwitchbackError(
            "INVALID_OPTION",
            `--snapshot ${JSON.stringify(o.snapshot)} is not valid; use auto, freeze, reflink or none`,
          );
        }
        if (!/^https?:\/\//.test(o.server)) {
          throw new SwitchbackError(
            "INVALID_OPTION",
            `--server ${JSON.stringify(o.server)} is not an http:// or https:// URL`,
          );
        }
        const token = readFileSync(o.tokenFile, "utf8").trim();
        if (token.length === 0) {
          throw new SwitchbackError(
            "INVALID_OPTION",
            `--token-file ${o.tokenFile} is empty; put the agent's token in it`,
          );
        }
        // loaded here: `switchback --help` and other commands need none of it
        const { default: pino } = await import("pino");
        const { AgentDaemon } = await import("../../agent/daemon.ts");
        const { quiescedSection } = await import("../../replication/replicate.ts");
        // never exit between pre- and post-snapshot hooks: thaw and post hooks come first (they are
        // bounded: the freeze by its watchdog, hooks by their time limit)
        const exitAfterQuiesced = (code: number) => {
          const q = quiescedSection();
          if (q === null) process.exit(code);
          void q.finally(() => process.exit(code));
        };
        const log = pino(
          { base: { role: "agent", item }, timestamp: pino.stdTimeFunctions.isoTime },
          pino.destination({ dest: 1, sync: true }),
        );
        const daemon = new AgentDaemon({
          server: o.server,
          token,
          item,
          disks: o.disk,
          stateDir: path.join(o.state ?? defaultStateDir(), item),
          crashEveryMs: parseDuration(o.crashEvery, "--crash-every"),
          appEveryMs: parseDuration(o.appEvery, "--app-every"),
          hooksDir: o.hooks,
          hookTimeoutMs: parseDuration(o.hookTimeout, "--hook-timeout"),
          snapshot: o.snapshot as SnapshotMode,
          deadlineMs: parseDuration(o.deadline, "--deadline"),
          journalBufferKbPerCpu,
          log,
        });
        const stopTimeoutMs = parseDuration(o.stopTimeout, "--stop-timeout");
        let signals = 0;
        const stop = (signal: NodeJS.Signals) => {
          if (++signals > 1) exitAfterQuiesced(130);
          log.info({ signal, pointUnderWay: daemon.busy }, "stopping");
          daemon.stop();
          // abandoning a point is safe (nothing is visible before the server commits it), only wasteful
          setTimeout(() => {
            log.warn({ stopTimeoutMs }, "the point under way did not finish in time; abandoning it");
            exitAfterQuiesced(0);
          }, stopTimeoutMs).unref();
        };
        process.on("SIGTERM", stop);
        process.on("SIGINT", stop);
        if (o.once) {
          const r = await daemon.once();
          if (r === null) process.exitCode = 1;
        } else {
          await daemon.run();
        }
        process.off("SIGTERM", stop);
        process.off("SIGINT", stop);
      },
    );
}

/** The agent under a vault; inside a machine booted by a vault's provider everything comes from env. */
async function runUnderVault(
  vault: string,
  o: {
    enrolToken?: string;
    name?: string;
    shutdownCommand?: string;
    site?: string;
    disk: string[];
    state?: string;
    hooks?: string;
    snapshot: string;
    stopTimeout: string;
    journalBufferKbPerCpu: number;
  },
): Promise<void> {
  const env = process.env;
  const { default: pino } = await import("pino");
  const log = pino(
    { base: { role: "agent" }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
  if (env.SWITCHBACK_DRILL === "1") {
    // a drill copy is the machine's double on a test network: it must never register as the machine
    log.info("drill copy: the agent stays idle");
    await new Promise<void>((resolve) => {
      // signal listeners do not keep Node running: a timer does, until a signal ends it
      const keep = setInterval(() => {}, 1 << 30);
      const done = () => {
        clearInterval(keep);
        resolve();
      };
      process.on("SIGTERM", done);
      process.on("SIGINT", done);
    });
    return;
  }
  const disks =
    o.disk.length > 0 ? o.disk : (env.SWITCHBACK_DISKS ?? "").split(":").filter((d) => d.length > 0);
  if (disks.length === 0) {
    throw new SwitchbackError(
      "INVALID_OPTION",
      "the agent needs the machine's disks: --disk (repeat) or SWITCHBACK_DISKS",
    );
  }
  const stateDir =
    o.state ??
    (env.SWITCHBACK_MACHINE_DIR !== undefined
      ? path.join(env.SWITCHBACK_MACHINE_DIR, "agent")
      : defaultStateDir());
  const { hostname } = await import("node:os");
  const { VaultAgent } = await import("../../agent/vault-agent.ts");
  const { quiescedSection } = await import("../../replication/replicate.ts");
  const instanceId = env.SWITCHBACK_INSTANCE;
  const agent = new VaultAgent({
    vault,
    ...((o.enrolToken ?? env.SWITCHBACK_ENROL_TOKEN) !== undefined
      ? { enrolToken: (o.enrolToken ?? env.SWITCHBACK_ENROL_TOKEN) as string }
      : {}),
    disks,
    stateDir,
    ...(env.SWITCHBACK_IDENTITY_FILE !== undefined ? { identityFile: env.SWITCHBACK_IDENTITY_FILE } : {}),
    name: o.name ?? env.SWITCHBACK_MACHINE_NAME ?? hostname(),
    ...(instanceId !== undefined ? { instanceId } : {}),
    ...((o.site ?? env.SWITCHBACK_SITE) !== undefined
      ? { site: (o.site ?? env.SWITCHBACK_SITE) as string }
      : {}),
    shutdown:
      o.shutdownCommand !== undefined
        ? { kind: "command", command: o.shutdownCommand }
        : instanceId !== undefined
          ? { kind: "process-group" }
          : { kind: "none" },
    journalBufferKbPerCpu: o.journalBufferKbPerCpu,
    ...(o.hooks !== undefined ? { hooksDir: o.hooks } : {}),
    snapshot: o.snapshot as SnapshotMode,
    log,
  });
  const stopTimeoutMs = parseDuration(o.stopTimeout, "--stop-timeout");
  const stop = () => {
    agent.stop();
    setTimeout(() => {
      const q = quiescedSection();
      if (q === null) process.exit(0);
      void q.finally(() => process.exit(0));
    }, stopTimeoutMs).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  await agent.run();
}

function collect(v: string, acc: string[]): string[] {
  return [...acc, v];
}
