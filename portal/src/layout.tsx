// The frame around every page: product name, navigation, the health of every site's appliances (so a
// lost site is visible from anywhere), who is signed in, and sign-out.
import type { ComponentChildren } from "preact";
import { type Appliance, client, ok, type Site, signOut } from "./api/client.ts";
import { ago } from "./lib/format.ts";
import { useLive } from "./lib/live.ts";
import { Dot, type Tone } from "./ui/kit.tsx";

const NAV = [
  { path: "/items", label: "Replicated items" },
  { path: "/jobs", label: "Jobs" },
  { path: "/plans", label: "Recovery plans" },
  { path: "/setup", label: "Set up" },
];

function siteTone(appliances: Appliance[]): { tone: Tone; words: string } {
  if (appliances.length === 0) return { tone: "muted", words: "no appliance" };
  const lost = appliances.filter((a) => a.health.liveness !== "online");
  if (lost.length === 0) return { tone: "ok", words: "appliances online" };
  if (lost.length === appliances.length) return { tone: "bad", words: "appliances lost" };
  return { tone: "warn", words: `${lost.length} of ${appliances.length} appliances lost` };
}

function SiteHealth() {
  const live = useLive(
    async () => {
      const [sites, appliances] = await Promise.all([
        ok(client.GET("/v1/sites")),
        ok(client.GET("/v1/appliances")),
      ]);
      return { sites, appliances };
    },
    5000,
    [],
  );
  if (live.error !== null && live.data === undefined) {
    return <span class="site-pill site-bad">vault unreachable</span>;
  }
  const d = live.data;
  if (d === undefined) return null;
  return (
    <ul class="sites" aria-label="Sites">
      {d.sites.map((s: Site) => {
        const mine = d.appliances.filter((a) => a.siteId === s.id);
        const t = siteTone(mine);
        const last =
          mine
            .map((a) => a.lastHeartbeatAt)
            .sort()
            .at(-1) ?? null;
        return (
          <li key={s.id} class="site-pill" title={`${s.name}: ${t.words}, last heartbeat ${ago(last)}`}>
            <Dot tone={t.tone} label={t.words} />
            <span class="site-name">{s.name}</span>
            {t.tone !== "ok" && <span class="site-words">{t.words}</span>}
          </li>
        );
      })}
      {live.error !== null && <li class="site-pill site-bad">vault unreachable</li>}
    </ul>
  );
}

export function Layout(p: { path: string; children: ComponentChildren }) {
  return (
    <div class="app">
      <a class="skip" href="#main">
        Skip to content
      </a>
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
        <SiteHealth />
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
