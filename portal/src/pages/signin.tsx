// Sign-in: the portal holds a vault token (admin tokens are printed at the vault's first start; the
// demo keeps its own in .demo/admin-token) and checks it with one call before going on.
import { useState } from "preact/hooks";
import { ApiError, client, keepToken, ok, tryToken } from "../api/client.ts";
import { ErrorBanner, Field } from "../ui/kit.tsx";

export function SignIn(p: { reason: string; onSignedIn: () => void }) {
  const [token, setToken] = useState("");
  const [remember, setRemember] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (token.trim() === "") {
      setError(new ApiError(0, "TOKEN_MISSING", "enter a token"));
      return;
    }
    setBusy(true);
    setError(null);
    tryToken(token.trim());
    try {
      await ok(client.GET("/v1/sites"));
      // kept only once the vault accepted it
      keepToken(remember);
      p.onSignedIn();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin" id="main">
      <form class="signin-card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">
          <span class="brand-mark" aria-hidden="true">
            ⇄
          </span>{" "}
          Sign in to Switchback
        </h1>
        {p.reason !== "" && error === null && <p class="banner banner-warn">{p.reason}</p>}
        <ErrorBanner error={error} />
        <Field
          label="Vault token"
          hint={
            <>
              The admin token is printed once, at the vault's first start. <code>./dev demo</code> keeps its
              token in <code>.demo/admin-token</code>.
            </>
          }
        >
          {(id, describedBy, invalid) => (
            <input
              id={id}
              type="password"
              autoComplete="current-password"
              value={token}
              onInput={(e) => setToken(e.currentTarget.value)}
              aria-describedby={describedBy}
              aria-invalid={invalid}
              required
            />
          )}
        </Field>
        <label class="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.currentTarget.checked)} />
          Keep me signed in on this device
        </label>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
