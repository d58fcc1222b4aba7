// Access: the operators' tokens. Each operator signs in with a token of their own, so every job
// records who started it; a viewer token may only read (a NOC screen, an auditor). Admins make and
// revoke them here; the secret is shown once. The vault never lets the last admin token go.
import { useState } from "preact/hooks";
import { type Answer, type ApiError, client, ok } from "../api/client.ts";
import { ago, time } from "../lib/format.ts";
import { useLive } from "../lib/live.ts";
import { useMe } from "../lib/me.ts";
import { Badge, Dialog, Empty, ErrorBanner, Field, Loading } from "../ui/kit.tsx";
import { Secret } from "../ui/secret.tsx";

type Token = Answer<"/v1/tokens", "get">[number];

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

function NewToken(p: { onMade: () => void }) {
  const [name, setName] = useState("");
  const [role, setRole] = useState<"admin" | "viewer">("viewer");
  const [made, setMade] = useState<{ name: string; token: string } | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [tried, setTried] = useState(false);
  const bad = NAME.test(name) ? null : "use 1 to 64 letters, digits, dots, dashes or underscores";
  const make = async (e: Event) => {
    e.preventDefault();
    setTried(true);
    if (bad !== null || busy) return;
    setBusy(true);
    try {
      const r = await ok(client.POST("/v1/tokens", { body: { name, role } }));
      setMade({ name: r.name, token: r.token });
      setError(null);
      setName("");
      setTried(false);
      p.onMade();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="panel" aria-labelledby="new-token-h">
      <h2 id="new-token-h">New operator token</h2>
      <form class="inline-form" onSubmit={make} aria-label="New operator token" noValidate>
        <ErrorBanner error={error} prefix="Not made:" />
        <Field label="Name" hint="who or what holds it, e.g. alice or noc-screen" error={tried ? bad : null}>
          {(id, describedBy, invalid) => (
            <input
              id={id}
              value={name}
              autoComplete="off"
              aria-describedby={describedBy}
              aria-invalid={invalid}
              onInput={(e) => setName(e.currentTarget.value)}
            />
          )}
        </Field>
        <Field
          label="Role"
          hint={role === "viewer" ? "sees everything, changes nothing" : "may do everything"}
        >
          {(id, describedBy) => (
            <select
              id={id}
              value={role}
              aria-describedby={describedBy}
              onChange={(e) => setRole(e.currentTarget.value as "admin" | "viewer")}
            >
              <option value="viewer">viewer (read only)</option>
              <option value="admin">admin</option>
            </select>
          )}
        </Field>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Making…" : "Make token"}
        </button>
      </form>
      {made !== null && (
        <Secret
          label={`The token of ${made.name}, shown this once: give it to its holder now.`}
          text={made.token}
        />
      )}
    </section>
  );
}

function Revoke(p: { token: Token; onClose: () => void; onDone: () => void }) {
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      await ok(client.DELETE("/v1/tokens/{token}", { params: { path: { token: p.token.id } } }));
      p.onDone();
    } catch (err) {
      setError(err as ApiError);
      setBusy(false);
    }
  };
  return (
    <Dialog
      title={`Revoke ${p.token.name}`}
      onClose={p.onClose}
      closeDisabled={busy}
      footer={
        <>
          <button type="button" onClick={p.onClose} disabled={busy}>
            Cancel
          </button>
          <button type="button" class="danger" onClick={go} disabled={busy}>
            {busy ? "Revoking…" : "Revoke"}
          </button>
        </>
      }
    >
      <p>
        The {p.token.role} token <strong>{p.token.name}</strong> stops working at once: its next request is
        refused. Jobs it started keep its name.
      </p>
      {p.token.current && (
        <p class="banner banner-warn">This is the token you are signed in with: you will be signed out.</p>
      )}
      <ErrorBanner error={error} prefix="Not revoked:" />
    </Dialog>
  );
}

export function AccessPage() {
  const me = useMe();
  const admin = me?.role === "admin";
  const live = useLive(
    () => (admin ? ok(client.GET("/v1/tokens")) : Promise.resolve([] as Token[])),
    30_000,
    [admin],
  );
  const [revoking, setRevoking] = useState<Token | null>(null);
  if (me === undefined) return <Loading what="who you are" />;
  return (
    <>
      <div class="page-head">
        <div>
          <h1>Access</h1>
          <p class="sub">
            Signed in as <strong>{me.name}</strong> ({me.role}). Each operator should hold a token of their
            own: every job records who started it.
          </p>
        </div>
      </div>
      {!admin ? (
        <Empty title="Only admins manage tokens">
          <p>
            Your token may read everything in the portal and change nothing. Ask an admin for a token that may
            act.
          </p>
        </Empty>
      ) : (
        <>
          <NewToken onMade={live.reload} />
          <ErrorBanner error={live.error} prefix="Could not refresh:" />
          {live.data === undefined ? (
            live.error === null && <Loading what="tokens" />
          ) : (
            <div class="table-wrap">
              <table aria-label="Operator tokens">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Role</th>
                    <th scope="col">Made</th>
                    <th scope="col">By</th>
                    <th scope="col">Last used</th>
                    <th scope="col">
                      <span class="sr-only">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {live.data.map((t) => (
                    <tr key={t.id}>
                      <td>
                        {t.name} {t.current && <Badge tone="info">you</Badge>}
                      </td>
                      <td>
                        <Badge tone={t.role === "admin" ? "warn" : "muted"}>{t.role}</Badge>
                      </td>
                      <td title={t.createdAt}>{time(t.createdAt)}</td>
                      <td>{t.createdBy ?? <span class="muted">first start</span>}</td>
                      <td>{t.lastUsedAt === null ? <span class="muted">never</span> : ago(t.lastUsedAt)}</td>
                      <td>
                        <button type="button" class="link-button" onClick={() => setRevoking(t)}>
                          Revoke<span class="sr-only"> {t.name}</span>
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
      {revoking !== null && (
        <Revoke
          token={revoking}
          onClose={() => setRevoking(null)}
          onDone={() => {
            setRevoking(null);
            live.reload();
          }}
        />
      )}
    </>
  );
}
