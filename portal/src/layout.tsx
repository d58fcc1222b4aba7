// The frame around every page: product name, navigation, the health of every site's appliances (so a
// lost site is visible from anywhere), who is signed in, and sign-out.
import type { ComponentChildren } from "preact";
import { type Answer, client, ok, signOut } from "./api/client.ts";
import { ago } from "./lib/format.ts";
import { useLive } from "./lib/live.ts";
import { useMe } from "./lib/me.ts";
import { Dot, type Tone } from "./ui/kit.tsx";

const NAV = [
  { path: "/items", label: "Replicated items" },
  { path: "/jobs", label: "Jobs" },
  { path: "/plans", label: "Recovery plans" },
  { path: "/alerts", label: "Alerts" },
  { path: "/setup", label: "Set up" },
  { path: "/access", label: "Access" },
];

type Overview = Answer<"/v1/overview", "get">;

const LIVENESS: Record<string, { tone: Tone; words: string }> = {
  online: { tone: "ok", words: "appliances online" },
  lost: { tone: "bad", words: "appliance lost" },
  unknown: { tone: "muted", words: "no heartbeat yet" },
};

/** Sites with their appliances' health, running jobs and open alerts: visible from every page. */
function Status(p: { path: string }) {
  // read again on every page change too, so what a page just started or finished shows at once
  const live = useLive(() => ok(client.GET("/v1/overview")), 5000, [p.path]);
  const d: Overview | undefined = live.data;
  if (live.error !== null && d === undefined)
    return <span class="site-pill site-bad">vault unreachable</span>;
  if (d === undefined) return null;
  return (
    <ul class="sites" aria-label="Status">
      {d.sites.map((s) => {
        const t =
          s.appliances.length === 0
            ? { tone: "muted" as Tone, words: "no appliance" }
            : (LIVENESS[s.liveness] ?? { tone: "muted" as Tone, words: s.liveness });
        const last =
          s.appliances
            .map((a) => a.lastHeartbeatAt)
            .filter((x): x is string => x !== null)
            .sort()
            .at(-1) ?? null;
        const detail = `last heartbeat ${ago(last)}; ${s.appliances.map((a) => `${a.name} ${a.liveness}`).join(", ") || "no appliance"}`;
        return (
          <li key={s.id} class="site-pill" title={`${s.name}: ${t.words}, ${detail}`}>
            {/* the set-up page lists every appliance with its health */}
            <a href="#/setup" class="site-link">
              <Dot tone={t.tone} label={t.words} />
              <span class="site-name">{s.name}</span>
              {t.tone !== "ok" && <span class="site-words">{t.words}</span>}
              <span class="sr-only">, {detail}</span>
            </a>
          </li>
        );
      })}
      {d.jobs.waiting > 0 ? (
        <li class="site-pill site-warn">
          <a href="#/jobs?state=waiting">{d.jobs.waiting} waiting for you</a>
        </li>
      ) : (
        d.jobs.running + d.jobs.queued > 0 && (
          <li class="site-pill">
            <a href="#/jobs?state=running">
              {d.jobs.running} running{d.jobs.queued > 0 ? `, ${d.jobs.queued} queued` : ""}
            </a>
          </li>
        )
      )}
      {d.alerts.open > 0 && (
        <li class="site-pill site-bad">
          <a href="#/alerts">
            {d.alerts.open} open alert{d.alerts.open === 1 ? "" : "s"}
          </a>
        </li>
      )}
      {live.error !== null && <li class="site-pill site-bad">vault unreachable</li>}
    </ul>
  );
}

function Me() {
  const me = useMe();
  if (me === undefined) return null;
  return (
    <a class="me" href="#/access" title="your token: its name and role">
      {me.name}
      {me.role === "viewer" && <span class="badge badge-muted">read only</span>}
    </a>
  );
}

export function Layout(p: { path: string; children: ComponentChildren }) {
  return (
    <div class="app">
      <button
        type="button"
        class="skip"
        onClick={() => {
          // a button, not a link to "#main": the hash belongs to the router
          document.getElementById("main")?.focus();
        }}
      >
        Skip to content
      </button>
      <header class="topbar">
        <a class="brand" href="#/items">
          <span class="brand-mark" aria-hidden="true">
            ⇄
          </span>
          Switchback
        </a>
        <nav aria-label="Main">
          {NAV.map((n) => (
            <a
              key={n.path}
              href={`#${n.path}`}
              aria-current={p.path === n.path || p.path.startsWith(`${n.path}/`) ? "page" : undefined}
            >
              {n.label}
            </a>
          ))}
        </nav>
        <Status path={p.path} />
        <Me />
        <button type="button" class="link-button" onClick={() => signOut()}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {p.children}
      </main>
    </div>
  );
}
