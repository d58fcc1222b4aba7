// Alerts: what the vault raised and cleared (RPO breach, replication stalled, an agent or appliance
// lost, a job failed), open ones first, each linked to what it is about. The header counts the open
// ones from every page; this is where they are read.
import { type Answer, client, ok } from "../api/client.ts";
import { ago, time } from "../lib/format.ts";
import { useLive } from "../lib/live.ts";
import { href, replaceQuery } from "../lib/router.ts";
import { Badge, Empty, ErrorBanner, Loading } from "../ui/kit.tsx";

type Alert = Answer<"/v1/alerts", "get">[number];

const KIND_WORDS: Record<string, string> = {
  "rpo-breach": "RPO breached",
  "replication-stalled": "Replication stalled",
  "agent-lost": "Agent lost",
  "appliance-lost": "Appliance lost",
  "job-failed": "Job failed",
};

/** Where the alert's subject ("item:<id>", "job:<id>", …) is shown in the portal, if anywhere. */
function Subject(p: { subject: string }) {
  const [kind, id] = p.subject.split(":", 2) as [string, string | undefined];
  if (id === undefined) return <code>{p.subject}</code>;
  if (kind === "item") return <a href={href(`/items/${encodeURIComponent(id)}`)}>item</a>;
  if (kind === "job") return <a href={href(`/jobs/${id}`)}>job</a>;
  return (
    <span>
      {kind} <code>{id}</code>
    </span>
  );
}

function AlertRow(p: { a: Alert }) {
  const a = p.a;
  return (
    <tr>
      <td>
        <Badge tone={!a.open ? "muted" : a.severity === "critical" ? "bad" : "warn"}>
          {a.open ? a.severity : "cleared"}
        </Badge>
      </td>
      <td class="nowrap">{KIND_WORDS[a.kind] ?? a.kind}</td>
      <td>
        <Subject subject={a.subject} />
      </td>
      <td>{a.message}</td>
      <td class="nowrap" title={a.raisedAt}>
        {time(a.raisedAt)}
        {a.clearedAt !== null && <span class="muted"> → {time(a.clearedAt)}</span>}
      </td>
      <td class="nowrap">
        {a.delivery.deliveredAt !== null ? (
          <span class="muted">sent {ago(a.delivery.deliveredAt)}</span>
        ) : a.delivery.error !== null ? (
          <span class="field-error" title={a.delivery.error}>
            not sent
          </span>
        ) : (
          <span class="muted">—</span>
        )}
      </td>
    </tr>
  );
}

export function AlertsPage(p: { query: URLSearchParams }) {
  const open = p.query.get("all") !== "1";
  const live = useLive(
    () =>
      ok(client.GET("/v1/alerts", { params: { query: open ? { open: true, limit: 500 } : { limit: 500 } } })),
    5000,
    [open],
  );
  const d = live.data;
  return (
    <>
      <div class="page-head">
        <div>
          <h1>Alerts</h1>
          <p class="sub">
            Raised and cleared by the vault; the webhook in its settings receives the same events.
          </p>
        </div>
        <div class="actions">
          <label class="check">
            <input
              type="checkbox"
              checked={!open}
              onChange={(e) => replaceQuery({ all: e.currentTarget.checked ? "1" : undefined })}
            />
            Show cleared alerts too
          </label>
        </div>
      </div>
      <ErrorBanner error={live.error} prefix="Could not refresh:" />
      {d === undefined ? (
        live.error === null && <Loading what="alerts" />
      ) : d.length === 0 ? (
        <Empty title={open ? "No open alert" : "No alert yet"}>
          <p>
            The vault raises an alert when an item's RPO passes its threshold, replication stalls, an agent or
            an appliance stops reporting, or a job fails, and clears it when that is over.
          </p>
        </Empty>
      ) : (
        <div class="table-wrap">
          <table aria-label="Alerts">
            <thead>
              <tr>
                <th scope="col">Severity</th>
                <th scope="col">Kind</th>
                <th scope="col">About</th>
                <th scope="col">What happened</th>
                <th scope="col">Raised</th>
                <th scope="col">Webhook</th>
              </tr>
            </thead>
            <tbody>
              {d.map((a) => (
                <AlertRow key={a.id} a={a} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
