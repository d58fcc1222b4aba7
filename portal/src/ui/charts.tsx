// Two pictures an operator reads faster than a table: the recovery points along time (crash- and
// app-consistent on their own rows), and RPO over the last hours against the item's threshold. Plain
// SVG with text alternatives: each chart has a title and a one-sentence summary for screen readers.
import type { PointView } from "../api/client.ts";
import { duration, time } from "../lib/format.ts";

const W = 800;

function ticks(from: number, to: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i <= n; i++) out.push(from + ((to - from) * i) / n);
  return out;
}

function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
}

function PointMark(p: { q: PointView; x: number; onPick: ((id: string) => void) | undefined }) {
  const app = p.q.consistency === "app";
  const label = `${app ? "app" : "crash"}-consistent point ${p.q.id} at ${time(p.q.createdAt)}, ${duration(p.q.ageSeconds)} ago`;
  const rect = (
    <rect
      x={p.x - (app ? 2 : 1)}
      y={app ? 36 : 12}
      width={app ? 4 : 2.5}
      height="16"
      class={app ? "mark-app" : "mark-crash"}
    >
      <title>{label}</title>
    </rect>
  );
  if (p.onPick === undefined) return rect;
  const pick = p.onPick;
  return (
    // biome-ignore lint/a11y/useSemanticElements: an SVG mark cannot be a <button>; role, focus and keys make it one
    <g
      class="point-mark"
      role="button"
      tabIndex={0}
      aria-label={label}
      onClick={() => pick(p.q.id)}
      onKeyDown={(e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          pick(p.q.id);
        }
      }}
    >
      {rect}
    </g>
  );
}

/** Recovery points over the window that holds them (at least the last hour). */
export function PointTimeline(p: {
  points: readonly PointView[];
  now: number;
  onPick?: (id: string) => void;
}) {
  const H = 74;
  const oldest = p.points.reduce((m, x) => Math.min(m, Date.parse(x.createdAt)), p.now);
  // the window that holds the points, at least ten minutes, with a little room before the oldest
  const from0 = Math.min(oldest, p.now - 600_000);
  const from = from0 - (p.now - from0) * 0.02;
  const span = Math.max(1, p.now - from);
  const x = (ms: number) => 10 + ((ms - from) / span) * (W - 20);
  const crash = p.points.filter((q) => q.consistency === "crash");
  const app = p.points.filter((q) => q.consistency === "app");
  const summary = `${p.points.length} recovery points from ${time(new Date(from).toISOString())} to now: ${crash.length} crash-consistent, ${app.length} app-consistent${p.points[0] ? `, the latest ${duration(p.points[0].ageSeconds)} old` : ""}.`;
  return (
    <figure class="chart">
      <svg
        class="timeline"
        viewBox={`0 0 ${W} ${H}`}
        role={p.onPick !== undefined ? "group" : "img"}
        aria-label={summary}
      >
        <title>{summary}</title>
        <line x1="10" x2={W - 10} y1="20" y2="20" class="axis-line" />
        <line x1="10" x2={W - 10} y1="44" y2="44" class="axis-line" />
        {[...crash, ...app].map((q) => (
          <PointMark key={q.id} q={q} x={x(Date.parse(q.createdAt))} onPick={p.onPick} />
        ))}
        {ticks(from, p.now, 4).map((t, i) => (
          <text
            key={t}
            x={x(t)}
            y={H - 4}
            class="tick"
            text-anchor={i === 0 ? "start" : i === 4 ? "end" : "middle"}
          >
            {i === 4 ? "now" : clock(t)}
          </text>
        ))}
      </svg>
      <figcaption class="legend">
        <span class="lg-crash">crash-consistent ({crash.length})</span>
        <span class="lg-app">app-consistent ({app.length})</span>
      </figcaption>
    </figure>
  );
}

export interface RpoBucket {
  at: string;
  rpoSeconds: number | null;
}

/** RPO per bucket as bars, the threshold as a line; bars over the threshold are red. */
export function RpoChart(p: { buckets: readonly RpoBucket[]; thresholdSeconds: number; hours: number }) {
  const H = 140;
  const top = 10;
  const bottom = H - 22;
  const values = p.buckets.map((b) => b.rpoSeconds ?? 0);
  const peak = Math.max(p.thresholdSeconds * 1.25, ...values, 1);
  const y = (v: number) => bottom - (v / peak) * (bottom - top);
  const bw = (W - 60) / Math.max(1, p.buckets.length);
  const over = p.buckets.filter((b) => (b.rpoSeconds ?? 0) > p.thresholdSeconds).length;
  const worst = Math.max(0, ...values);
  const summary = p.buckets.every((b) => b.rpoSeconds === null)
    ? `No RPO recorded in the last ${p.hours} h.`
    : `RPO over the last ${p.hours} h: worst ${duration(worst)} against a threshold of ${duration(p.thresholdSeconds)}; ${over} of ${p.buckets.length} intervals above it.`;
  const first = p.buckets[0];
  const last = p.buckets.at(-1);
  return (
    <figure class="chart">
      <svg class="rpo-chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        <title>{summary}</title>
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1="50" x2={W - 10} y1={y(peak * f)} y2={y(peak * f)} class="grid-line" />
            <text x="44" y={y(peak * f) + 4} class="tick" text-anchor="end">
              {duration(peak * f)}
            </text>
          </g>
        ))}
        {p.buckets.map((b, i) =>
          b.rpoSeconds === null ? null : (
            <rect
              key={b.at}
              x={50 + i * bw}
              y={y(b.rpoSeconds)}
              width={Math.max(1, bw - 0.5)}
              height={Math.max(0.5, bottom - y(b.rpoSeconds))}
              class={b.rpoSeconds > p.thresholdSeconds ? "bar-bad" : "bar-ok"}
            >
              <title>{`${time(b.at)}: RPO ${duration(b.rpoSeconds)}`}</title>
            </rect>
          ),
        )}
        <line x1="50" x2={W - 10} y1={y(p.thresholdSeconds)} y2={y(p.thresholdSeconds)} class="threshold" />
        {first !== undefined && (
          <text x="50" y={H - 4} class="tick">
            {clock(Date.parse(first.at))}
          </text>
        )}
        {last !== undefined && (
          <text x={W - 10} y={H - 4} class="tick" text-anchor="end">
            now
          </text>
        )}
      </svg>
      <figcaption class="legend">
        <span class="lg-crash">RPO</span>
        <span class="lg-threshold">threshold {duration(p.thresholdSeconds)}</span>
      </figcaption>
    </figure>
  );
}
