// One replicated item: what it is, how healthy it is, its recovery points on a timeline, RPO over the
// last 24 h, its target settings (editable) and disks, its jobs, and the operations its state allows,
// each as a dialog that previews the decision before anything starts.
import { useState } from "preact/hooks";
import { type ApiError, client, type ItemView, type Machine, type Operation, ok } from "../api/client.ts";
import { OperationDialog } from "../dialogs/index.tsx";
import { bytes, duration, percent, time } from "../lib/format.ts";
import { type Live, useLive } from "../lib/live.ts";
import { useReadOnly } from "../lib/me.ts";
import { isFailback } from "../lib/operation-rules.ts";
import { href, navigate, replaceQuery } from "../lib/router.ts";
import { health, jobTone, OPERATION_WORDS, phaseWords } from "../lib/words.ts";
import { PointTimeline, RpoChart } from "../ui/charts.tsx";
import { Badge, Empty, ErrorBanner, KeyValues, Loading, Progress, Tabs } from "../ui/kit.tsx";
import { TargetSettingsForm } from "./target-settings.tsx";

const OP_ORDER: readonly Operation[] = [
  "test-failover",
  "test-failover-cleanup",
  "failover",
  "change-point",
  "commit",
  "reprotect",
  "disable",
];

/** "Failback" when the failover would bring the machine home. */
export function operationWords(it: ItemView, op: Operation): string {
  if (op !== "failover") return OPERATION_WORDS[op];
  const word = isFailback(it) ? "Failback" : "Failover";
  // a failover left failing over (the vault stopped mid-way) is resumed, not chosen again
  return it.phase === "failing-over" ? `Resume ${word.toLowerCase()}` : word;
}

function StateBanner(p: { it: ItemView }) {
  const it = p.it;
  if (it.activeJob !== null) {
    return (
      <div class="banner banner-info" role="status">
        A {it.activeJob.kind} job is {it.activeJob.state}:{" "}
        <a href={href(`/jobs/${it.activeJob.id}`)}>follow it</a>. Operations come back when it ends.
      </div>
    );
  }
  if (it.phase === "failed-over" && it.failover !== null) {
    return (
      <div class="banner banner-warn" role="status">
        Running at <strong>{it.target}</strong> from point <code>{it.failover.point}</code>, not committed.
        Check the machine, then commit, or change to another point. The source was{" "}
        {it.failover.sourceShutdown.requested
          ? `asked to shut down: ${it.failover.sourceShutdown.outcome}`
          : "not shut down"}
        .
      </div>
    );
  }
  if (it.phase === "failover-committed") {
    return (
      <div class="banner banner-warn" role="status">
        The failover is committed and nothing protects this machine now. Reprotect it to replicate it back.
      </div>
    );
  }
  if (it.health.resyncRequired) {
    return (
      <div class="banner banner-bad" role="status">
        A full resynchronisation is required: the vault lost track of what changed on the source.
      </div>
    );
  }
  if (it.drill !== null) {
    return (
      <div class="banner banner-info" role="status">
        A test failover copy runs at <strong>{it.target}</strong> from point <code>{it.drill.point}</code>.
        Clean it up when the drill is done.
      </div>
    );
  }
  return null;
}

function HealthPanel(p: { it: ItemView }) {
  const it = p.it;
  const h = health(it);
  const r = it.health.initialReplication;
  const report = it.lastPointReport as Record<string, number> | null;
  return (
    <section class="panel" aria-labelledby="health-h">
      <div class="panel-head">
        <h2 id="health-h">Health</h2>
        <Badge tone={h.tone}>{h.word}</Badge>
      </div>
      <KeyValues
        rows={[
          [
            "RPO",
            it.health.rpoSeconds === null
              ? "does not apply now"
              : `${duration(it.health.rpoSeconds)} (threshold ${duration(it.health.rpoThresholdSeconds)})`,
          ],
          ["Status", h.why],
          ...(r !== null
            ? ([
                [
                  "Initial replication",
                  <div key="p">
                    <Progress value={r.percent} label="initial replication" />
                    {percent(r.percent)} · {bytes(r.bytesDone)} of {bytes(r.bytesTotal)} ·{" "}
                    {bytes(r.bytesPerSecond)}/s
                    {r.etaSeconds !== null ? ` · ${duration(r.etaSeconds)} left` : ""}
                  </div>,
                ],
              ] as [string, preact.ComponentChildren][])
            : []),
          ...(report !== null && typeof report.changedBlocks === "number"
            ? ([
                [
                  "Last point",
                  `${report.changedBlocks} changed blocks, ${bytes(report.bytesSent)} sent${typeof report.maxFreezeMs === "number" ? `, froze ${report.maxFreezeMs} ms` : ""}`,
                ],
              ] as [string, preact.ComponentChildren][])
            : []),
        ]}
      />
    </section>
  );
}

function PointsPanel(p: { it: ItemView }) {
  const it = p.it;
  const pt = (x: ItemView["latestPoint"]) =>
    x === null ? (
      <span class="muted">none</span>
    ) : (
      <span title={x.id}>
        {time(x.createdAt)} <span class="muted">({duration(x.ageSeconds)} ago)</span>
      </span>
    );
  return (
    <section class="panel" aria-labelledby="points-h">
      <div class="panel-head">
        <h2 id="points-h">Latest recovery points</h2>
      </div>
      <KeyValues
        rows={[
          ["Latest (crash-consistent)", pt(it.latestPoint)],
          ["Latest app-consistent", pt(it.latestAppConsistentPoint)],
          ["Points held", it.pointCount < 0 ? "—" : String(it.pointCount)],
          ["Policy", it.policy],
        ]}
      />
    </section>
  );
}

function SummaryPanel(p: { it: ItemView; machine: Live<Machine | undefined> }) {
  const it = p.it;
  const m = p.machine;
  const mm = m.data;
  return (
    <section class="panel" aria-labelledby="summary-h">
      <div class="panel-head">
        <h2 id="summary-h">Machine</h2>
        {mm !== undefined && (
          <Badge
            tone={mm.health.liveness === "online" ? "ok" : mm.health.liveness === "lost" ? "bad" : "muted"}
          >
            agent {mm.health.liveness}
          </Badge>
        )}
      </div>
      <KeyValues
        rows={[
          ["Machine", mm?.name ?? (m.error !== null ? `not read: ${m.error.message}` : "…")],
          ["Host name", mm?.hostname ?? "—"],
          ["OS", mm?.os ?? "—"],
          ["Runs at", mm?.site ?? "—"],
          ["Size", mm === undefined || mm.cpus === null ? "—" : `${mm.cpus} CPU · ${bytes(mm.memoryBytes)}`],
          ["Home", it.home],
          ["Process server", it.processServer],
          ["Datastore", it.datastore],
        ]}
      />
    </section>
  );
}

function Charts(p: { it: ItemView; onPick: (id: string) => void }) {
  const it = p.it;
  const points = useLive(
    () => ok(client.GET("/v1/items/{item}/points", { params: { path: { item: it.id } } })),
    10_000,
    // a new point or a new direction shows at once, not at the next tick
    [it.id, it.latestPoint?.id, it.phase],
  );
  const [hours, setHours] = useState(24);
  const rpo = useLive(
    () =>
      ok(
        client.GET("/v1/items/{item}/rpo-history", {
          params: { path: { item: it.id }, query: { hours } },
        }),
      ),
    30_000,
    [it.id, it.phase, it.latestPoint?.id, hours],
  );
  return (
    <div class="grid">
      <section class="panel" aria-labelledby="timeline-h">
        <div class="panel-head">
          <h2 id="timeline-h">Recovery points</h2>
          <span class="more muted">Select a point to drill or fail over to it</span>
        </div>
        {points.data === undefined ? (
          points.error === null && <Loading what="points" />
        ) : points.data.length === 0 ? (
          <p class="muted">No recovery point yet: the first one lands when initial replication ends.</p>
        ) : (
          <PointTimeline points={points.data} now={Date.now()} onPick={p.onPick} />
        )}
        <ErrorBanner error={points.error} />
      </section>
      <section class="panel" aria-labelledby="rpo-h">
        <div class="panel-head">
          <h2 id="rpo-h">RPO, last {hours} h</h2>
          <select
            class="more"
            aria-label="RPO chart period"
            value={hours}
            onChange={(e) => setHours(Number(e.currentTarget.value))}
          >
            {[1, 6, 24].map((h) => (
              <option key={h} value={h}>
                {h} h
              </option>
            ))}
          </select>
        </div>
        {rpo.data === undefined ? (
          rpo.error !== null ? (
            <ErrorBanner error={rpo.error} />
          ) : (
            <Loading what="RPO history" />
          )
        ) : !rpo.data.replicating ? (
          <p class="muted">
            RPO applies while the item replicates; it is {phaseWords(it.phase).toLowerCase()} now.
          </p>
        ) : (
          <RpoChart buckets={rpo.data.buckets} thresholdSeconds={rpo.data.thresholdSeconds} hours={hours} />
        )}
      </section>
    </div>
  );
}

function DisksTab(p: { it: ItemView; machine: Live<Machine | undefined> }) {
  const m = p.machine;
  if (m.data === undefined)
    return m.error !== null ? <ErrorBanner error={m.error} /> : <Loading what="disks" />;
  const roles = p.it.targetSettings.diskRoles ?? {};
  if (m.data.disks.length === 0) return <p class="muted">The agent has not reported any disk yet.</p>;
  return (
    <div class="table-wrap">
      <table aria-label="Disks">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Role</th>
            <th scope="col" class="num">
              Size
            </th>
            <th scope="col" class="num">
              Sector
            </th>
            <th scope="col">Identity</th>
            <th scope="col">Device at the source</th>
          </tr>
        </thead>
        <tbody>
          {m.data.disks.map((d, i) => (
            <tr key={d.uuid}>
              <td>{i}</td>
              <td>{(roles[d.uuid] ?? d.role) === "os" ? "OS disk" : "Data disk"}</td>
              <td class="num">{bytes(d.sizeBytes)}</td>
              <td class="num">{d.sectorSize} B</td>
              <td>
                <code>{d.uuid}</code>
              </td>
              <td>
                <code>{d.path ?? "—"}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function JobsTab(p: { it: ItemView }) {
  const jobs = useLive(
    () => ok(client.GET("/v1/jobs", { params: { query: { item: p.it.id, limit: 20 } } })),
    5000,
    [p.it.id],
  );
  if (jobs.data === undefined) {
    return jobs.error !== null ? <ErrorBanner error={jobs.error} /> : <Loading what="jobs" />;
  }
  if (jobs.data.length === 0) return <p class="muted">No job has run on this item yet.</p>;
  return (
    <div class="table-wrap">
      <table aria-label="Jobs of this item">
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">State</th>
            <th scope="col">Started</th>
            <th scope="col" class="num">
              Took
            </th>
            <th scope="col">By</th>
          </tr>
        </thead>
        <tbody>
          {jobs.data.map((j) => (
            <tr key={j.id}>
              <td>
                <a href={href(`/jobs/${j.id}`)}>{j.kind}</a>
              </td>
              <td>
                <Badge tone={jobTone(j.state)}>{j.state}</Badge>
                {j.error !== null && <span class="muted"> {j.error.code}</span>}
              </td>
              <td>{time(j.startedAt ?? j.createdAt)}</td>
              <td class="num">{j.durationMs === null ? "—" : duration(j.durationMs / 1000)}</td>
              <td>{j.createdBy ?? "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function ItemPage(p: { item: string; query: URLSearchParams }) {
  const live = useLive(
    () => ok(client.GET("/v1/items/{item}", { params: { path: { item: p.item } } })),
    5000,
    [p.item],
  );
  // the machine, read once for the summary and the disks tab (both show it)
  const machineId = live.data?.machineId;
  const machine = useLive(
    () =>
      machineId === undefined
        ? Promise.resolve(undefined)
        : ok(client.GET("/v1/machines/{machine}", { params: { path: { machine: machineId } } })),
    10_000,
    [machineId],
  );
  const [dialog, setDialog] = useState<{ op: Operation; point?: string } | null>(null);
  const readOnly = useReadOnly();
  const tab = p.query.get("tab") ?? "settings";
  const it = live.data;
  if (it === undefined) {
    if (live.error !== null && (live.error as ApiError).status === 404) {
      return (
        <Empty
          title={`There is no item ${p.item}`}
          action={<a href="#/items">Back to the replicated items</a>}
        >
          <p>It may have been disabled, or the name is misspelt.</p>
        </Empty>
      );
    }
    return live.error !== null ? <ErrorBanner error={live.error} /> : <Loading what={p.item} />;
  }
  const h = health(it);
  // a viewer token may only read: no operation is offered to it (the vault would refuse it)
  const ops = readOnly ? [] : OP_ORDER.filter((o) => it.allowedOperations.includes(o));
  // a point picked on the timeline opens the least drastic operation that takes one: after a
  // failover, a change of point; otherwise a drill; the failover dialog only if nothing else is allowed
  const onPick = (id: string) => {
    const op = (["change-point", "test-failover", "failover"] as const).find((o) =>
      it.allowedOperations.includes(o),
    );
    if (op !== undefined) setDialog({ op, point: id });
  };
  return (
    <>
      <div class="crumbs">
        <a href="#/items">Replicated items</a> /
      </div>
      <div class="page-head">
        <div>
          <h1>
            {it.name} <Badge tone={h.tone}>{h.word}</Badge>
          </h1>
          <p class="sub">
            {phaseWords(it.phase)} · {it.direction} · generation {it.generation}
          </p>
        </div>
        <fieldset class="actions">
          <legend class="sr-only">Operations</legend>
          {readOnly && <span class="muted">Read only: your token may not change anything.</span>}
          {!readOnly && ops.length === 0 && it.activeJob === null && (
            <span class="muted">No operation is possible in this state.</span>
          )}
          {ops.map((op) => (
            <button
              type="button"
              key={op}
              class={op === "failover" ? "primary" : undefined}
              onClick={() => setDialog({ op })}
            >
              {operationWords(it, op)}
            </button>
          ))}
        </fieldset>
      </div>
      <ErrorBanner error={live.error} prefix="Could not refresh:" />
      <StateBanner it={it} />
      <div class="grid">
        <HealthPanel it={it} />
        <PointsPanel it={it} />
        <SummaryPanel it={it} machine={machine} />
      </div>
      <Charts it={it} onPick={onPick} />
      <Tabs
        label="Item details"
        current={tab}
        onChange={(t) => replaceQuery({ tab: t })}
        tabs={[
          { id: "settings", label: "Compute and network" },
          { id: "disks", label: "Disks" },
          { id: "jobs", label: "Jobs" },
        ]}
      >
        {tab === "disks" ? (
          <DisksTab it={it} machine={machine} />
        ) : tab === "jobs" ? (
          <JobsTab it={it} />
        ) : (
          <TargetSettingsForm item={it} onSaved={live.reload} readOnly={readOnly} />
        )}
      </Tabs>
      {dialog !== null && (
        <OperationDialog
          item={it}
          op={dialog.op}
          {...(dialog.point !== undefined ? { point: dialog.point } : {})}
          onClose={() => setDialog(null)}
          onStarted={(job) => {
            setDialog(null);
            live.reload();
            navigate(`/jobs/${job.id}`);
          }}
        />
      )}
    </>
  );
}
