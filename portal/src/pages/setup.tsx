// Set up: the first-run walk-through, and where an operator comes back to add a site, an appliance,
// a policy or a machine. Five steps, each marked done from what the vault has, each with what to do
// next: sites, appliances at each site, a replication policy, an agent on a machine, and protection.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { type ApiError, client, ok } from "../api/client.ts";
import { ago } from "../lib/format.ts";
import { useLive } from "../lib/live.ts";
import { useReadOnly } from "../lib/me.ts";
import { navigate } from "../lib/router.ts";
import { type PolicyDraft, validatePolicy } from "../lib/validate.ts";
import { Badge, ErrorBanner, Field, Loading } from "../ui/kit.tsx";
import { Secret } from "../ui/secret.tsx";

async function loadAll() {
  const [sites, appliances, policies, machines, items] = await Promise.all([
    ok(client.GET("/v1/sites")),
    ok(client.GET("/v1/appliances")),
    ok(client.GET("/v1/policies")),
    ok(client.GET("/v1/machines")),
    ok(client.GET("/v1/items")),
  ]);
  return { sites, appliances, policies, machines, items };
}
type All = Awaited<ReturnType<typeof loadAll>>;

function Step(p: { n: number; title: string; done: boolean; children: ComponentChildren }) {
  return (
    <section class={`panel setup-step${p.done ? " setup-done" : ""}`} aria-labelledby={`step-${p.n}`}>
      <div class="panel-head">
        <span class="step-n" aria-hidden="true">
          {p.done ? "✓" : p.n}
        </span>
        <h2 id={`step-${p.n}`}>
          {p.n}. {p.title}
        </h2>
        <Badge tone={p.done ? "ok" : "muted"}>{p.done ? "done" : "to do"}</Badge>
      </div>
      {p.children}
    </section>
  );
}

/** Pick a site, get a fresh token and the command that uses it (shown once). */
function TokenCommand(p: {
  all: All;
  form: string;
  siteLabel: string;
  button: string;
  secretLabel: string;
  command: (site: string) => Promise<string>;
}) {
  const [site, setSite] = useState("");
  const [cmd, setCmd] = useState<string | null>(null);
  const [err, setErr] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const make = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    try {
      setCmd(await p.command(site));
      setErr(null);
    } catch (x) {
      setErr(x as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <form class="inline-form" onSubmit={make} aria-label={p.form}>
        <ErrorBanner error={err} />
        <Field label={p.siteLabel}>
          {(id) => (
            <select id={id} value={site} required onChange={(e) => setSite(e.currentTarget.value)}>
              <option value="">Choose a site</option>
              {p.all.sites.map((s) => (
                <option key={s.id} value={s.name}>
                  {s.name}
                </option>
              ))}
            </select>
          )}
        </Field>
        <button type="submit" disabled={site === "" || busy}>
          {p.button}
        </button>
      </form>
      {cmd !== null && <Secret label={p.secretLabel} text={cmd} />}
    </>
  );
}

function SitesStep(p: { all: All; reload: () => void }) {
  const [name, setName] = useState("");
  const [subnet, setSubnet] = useState("");
  const [err, setErr] = useState<ApiError | null>(null);
  const add = async (e: Event) => {
    e.preventDefault();
    try {
      await ok(client.POST("/v1/sites", { body: { name, ...(subnet !== "" ? { subnet } : {}) } }));
      setName("");
      setSubnet("");
      setErr(null);
      p.reload();
    } catch (x) {
      setErr(x as ApiError);
    }
  };
  return (
    <Step n={1} title="Sites" done={p.all.sites.length >= 2}>
      <p class="muted">A site is where machines run: the primary site and at least one recovery site.</p>
      <p>
        {p.all.sites.map((s) => (
          <Badge key={s.id} tone="info">
            {s.name}
            {s.subnet !== null ? ` · ${s.subnet}` : ""}
          </Badge>
        ))}
      </p>
      <form class="inline-form" onSubmit={add} aria-label="Add a site">
        <ErrorBanner error={err} />
        <Field label="New site name">
          {(id) => <input id={id} value={name} required onInput={(e) => setName(e.currentTarget.value)} />}
        </Field>
        <Field label="Subnet (optional)">
          {(id) => (
            <input
              id={id}
              value={subnet}
              placeholder="10.20.0.0/16"
              onInput={(e) => setSubnet(e.currentTarget.value)}
            />
          )}
        </Field>
        <button type="submit">Add site</button>
      </form>
    </Step>
  );
}

function AppliancesStep(p: { all: All }) {
  const covered =
    p.all.sites.length > 0 &&
    p.all.sites.every((s) =>
      p.all.appliances.some((a) => a.siteId === s.id && a.health.liveness === "online"),
    );
  return (
    <Step n={2} title="Appliances" done={covered}>
      <p class="muted">
        Each site needs an appliance: it receives replication (process server), writes recovery points to its
        datastore and starts recovered machines. The built-in sites have one inside the vault.
      </p>
      <div class="table-wrap">
        <table aria-label="Appliances">
          <thead>
            <tr>
              <th scope="col">Appliance</th>
              <th scope="col">Site</th>
              <th scope="col">Roles</th>
              <th scope="col">Kind</th>
              <th scope="col">Health</th>
            </tr>
          </thead>
          <tbody>
            {p.all.appliances.map((a) => (
              <tr key={a.id}>
                <td>{a.name}</td>
                <td>{a.site}</td>
                <td>{a.roles.join(", ")}</td>
                <td>{a.kind}</td>
                <td>
                  <Badge tone={a.health.liveness === "online" ? "ok" : "bad"}>{a.health.liveness}</Badge>{" "}
                  <span class="muted">heard {ago(a.lastHeartbeatAt)}</span>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <TokenCommand
        all={p.all}
        form="Add an appliance"
        siteLabel="Site of the new appliance"
        button="Make a token and command"
        secretLabel="Run this on the site's appliance host (the token is shown once):"
        command={async (site) => {
          const t = await ok(client.POST("/v1/appliance-tokens", { body: { name: `appliance-${site}` } }));
          return `SWITCHBACK_TOKEN=${t.token} \\\n  switchback appliance --vault ${location.origin} \\\n  --name ${site}-appliance --site ${site} \\\n  --datastore /var/lib/switchback/${site}/datastore --listen 0.0.0.0:7443`;
        }}
      />
    </Step>
  );
}

const POLICY_FIELDS: readonly { k: keyof PolicyDraft; label: string; hint: string }[] = [
  { k: "name", label: "Name", hint: "" },
  { k: "rpoThreshold", label: "RPO threshold", hint: "alert when the newest point is older than this" },
  { k: "retention", label: "Keep points for", hint: "how far back you can recover" },
  { k: "crashConsistentEvery", label: "Crash-consistent point every", hint: "" },
  {
    k: "appConsistentEvery",
    label: "App-consistent point every",
    hint: "runs the machine's hooks; 0 for never",
  },
];

function PolicyStep(p: { all: All; reload: () => void }) {
  const [d, setD] = useState<PolicyDraft>({
    name: "",
    rpoThreshold: "5m",
    retention: "72h",
    crashConsistentEvery: "30s",
    appConsistentEvery: "4h",
  });
  const [tried, setTried] = useState(false);
  const [err, setErr] = useState<ApiError | null>(null);
  const errors = validatePolicy(d);
  const save = async (e: Event) => {
    e.preventDefault();
    setTried(true);
    if (Object.keys(errors).length > 0) return;
    try {
      await ok(client.POST("/v1/policies", { body: d }));
      setErr(null);
      setTried(false);
      setD({ ...d, name: "" });
      p.reload();
    } catch (x) {
      setErr(x as ApiError);
    }
  };
  return (
    <Step n={3} title="A replication policy" done={p.all.policies.length > 0}>
      <p class="muted">
        A policy says how often points are taken, how long they are kept and when RPO is breached. Existing:{" "}
        {p.all.policies.map((x) => x.name).join(", ") || "none"}.
      </p>
      <form class="inline-form" onSubmit={save} aria-label="New policy" noValidate>
        <ErrorBanner error={err} />
        {POLICY_FIELDS.map((f) => (
          <Field
            key={f.k}
            label={f.label}
            hint={f.hint === "" ? undefined : f.hint}
            error={tried || d[f.k] !== "" ? errors[f.k] : undefined}
          >
            {(id, describedBy, invalid) => (
              <input
                id={id}
                value={d[f.k]}
                aria-describedby={describedBy}
                aria-invalid={invalid}
                onInput={(e) => setD({ ...d, [f.k]: e.currentTarget.value })}
              />
            )}
          </Field>
        ))}
        <button type="submit">Create policy</button>
      </form>
    </Step>
  );
}

function AgentStep(p: { all: All }) {
  const online = p.all.machines.filter((m) => m.health.liveness === "online");
  return (
    <Step n={4} title="An agent on each machine" done={online.length > 0}>
      <p class="muted">
        The agent reads the machine's disks and sends what changed. It registers with an enrolment token once,
        then uses its own. {p.all.machines.length} machines known, {online.length} with an agent online.
      </p>
      <TokenCommand
        all={p.all}
        form="Enrol a machine"
        siteLabel="Site the machine runs at"
        button="Make an enrolment command"
        secretLabel="Run this on the machine, naming its disks (the token is shown once):"
        command={async (site) => {
          const t = await ok(client.POST("/v1/enrol-tokens", { body: {} }));
          return `SWITCHBACK_ENROL_TOKEN=${t.token} \\\n  switchback agent --vault ${location.origin} --site ${site} \\\n  --disk /dev/sda --disk /dev/sdb --shutdown-command 'systemctl poweroff'`;
        }}
      />
    </Step>
  );
}

function ProtectStep(p: { all: All }) {
  const protectedIds = new Set(p.all.items.map((i) => i.machineId));
  const candidates = p.all.machines.filter((m) => !protectedIds.has(m.id));
  const [machine, setMachine] = useState("");
  const [to, setTo] = useState("");
  const [policy, setPolicy] = useState("");
  const [err, setErr] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const chosen = p.all.machines.find((m) => m.name === machine);
  const sameSite = chosen !== undefined && chosen.site === to;
  const go = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const r = await ok(
        client.POST("/v1/items", { body: { machine, to, ...(policy !== "" ? { policy } : {}) } }),
      );
      navigate(`/items/${encodeURIComponent(r.item.name)}`);
    } catch (x) {
      setErr(x as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Step n={5} title="Protect a machine" done={p.all.items.length > 0}>
      <p class="muted">
        Enabling replication copies the machine's disks to the recovery site once, then only what changes. It
        shows in the replicated items with its progress.
      </p>
      {candidates.length === 0 ? (
        <p>Every known machine is protected. Enrol another machine first (step 4).</p>
      ) : (
        <form class="inline-form" onSubmit={go} aria-label="Protect a machine">
          <ErrorBanner error={err} />
          <Field label="Machine">
            {(id) => (
              <select id={id} value={machine} required onChange={(e) => setMachine(e.currentTarget.value)}>
                <option value="">Choose a machine</option>
                {candidates.map((m) => (
                  <option key={m.id} value={m.name}>
                    {m.name} ({m.site ?? "no site"}, agent {m.health.liveness})
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field
            label="Recovery site"
            error={sameSite ? "the recovery site must differ from the site the machine runs at" : undefined}
          >
            {(id, describedBy, invalid) => (
              <select
                id={id}
                value={to}
                required
                aria-describedby={describedBy}
                aria-invalid={invalid}
                onChange={(e) => setTo(e.currentTarget.value)}
              >
                <option value="">Choose a site</option>
                {p.all.sites.map((s) => (
                  <option key={s.id} value={s.name}>
                    {s.name}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Policy">
            {(id) => (
              <select id={id} value={policy} onChange={(e) => setPolicy(e.currentTarget.value)}>
                <option value="">default</option>
                {p.all.policies
                  .filter((x) => x.name !== "default" && x.derivedFrom === null)
                  .map((x) => (
                    <option key={x.id} value={x.name}>
                      {x.name}
                    </option>
                  ))}
              </select>
            )}
          </Field>
          <button type="submit" class="primary" disabled={busy || machine === "" || to === "" || sameSite}>
            {busy ? "Enabling…" : "Enable replication"}
          </button>
        </form>
      )}
    </Step>
  );
}

export function SetupPage() {
  const readOnly = useReadOnly();
  // every list in full: fine for a set-up, too heavy to poll often with thousands of items
  const live = useLive(loadAll, 15_000, []);
  const all = live.data;
  if (all === undefined)
    return live.error !== null ? <ErrorBanner error={live.error} /> : <Loading what="the set-up" />;
  const done = [
    all.sites.length >= 2,
    all.sites.length > 0 &&
      all.sites.every((s) => all.appliances.some((a) => a.siteId === s.id && a.health.liveness === "online")),
    all.policies.length > 0,
    all.machines.some((m) => m.health.liveness === "online"),
    all.items.length > 0,
  ].filter(Boolean).length;
  return (
    <>
      <div class="page-head">
        <div>
          <h1>Set up protection</h1>
          <p class="sub">
            {done} of 5 steps done.{" "}
            {done === 5 ? (
              <a href="#/items">See the replicated items</a>
            ) : (
              "Each step below says what to do next; the page updates itself as things come online."
            )}
          </p>
        </div>
      </div>
      {readOnly && (
        <p class="banner banner-warn" role="status">
          Your token may only read: the steps below show what is set up, and an admin token is needed to add
          to it.
        </p>
      )}
      <SitesStep all={all} reload={live.reload} />
      <AppliancesStep all={all} />
      <PolicyStep all={all} reload={live.reload} />
      <AgentStep all={all} />
      <ProtectStep all={all} />
    </>
  );
}
