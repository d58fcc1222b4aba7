// "Waiting for you": the manual action a job waits at, what to do, and the one button that confirms it
// is done. The job page and a plan's page show it; both confirm the same way: a plan's manual action
// through its plan (which records who confirmed and refuses when the run has moved on to another
// action), any other wait by the signal the job waits for.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { ApiError, client, type Job, ok } from "../api/client.ts";
import { ErrorBanner } from "./kit.tsx";

/** What a confirmation goes to. */
export type WaitTarget = { plan: string; step: string } | { job: string; signal: string };

/** The confirmation a waiting job takes, or null when it does not wait for one. */
export function waitTarget(job: Pick<Job, "id" | "planId" | "state" | "waitingFor">): WaitTarget | null {
  if (job.state !== "waiting" || job.waitingFor === null) return null;
  if (job.planId !== null && job.waitingFor.startsWith("confirm-")) {
    return { plan: job.planId, step: job.waitingFor.slice("confirm-".length) };
  }
  return { job: job.id, signal: job.waitingFor };
}

/** Sends the confirmation; false when it had been sent already. */
async function confirm(t: WaitTarget): Promise<boolean> {
  if ("plan" in t) {
    const r = await ok(
      client.POST("/v1/plans/{plan}/confirm", { params: { path: { plan: t.plan } }, body: { step: t.step } }),
    );
    return r.accepted;
  }
  const r = await ok(
    client.POST("/v1/jobs/{job}/signals/{name}", {
      params: { path: { job: t.job, name: t.signal } },
      body: {},
    }),
  );
  return r.accepted;
}

/**
 * The panel. Key it by the wait (the step or signal), so a new wait starts with a fresh button.
 * `class` gives the page's look; the title says what to do, the children where and why.
 */
export function WaitingPanel(p: {
  target: WaitTarget;
  title: ComponentChildren;
  class: string;
  children?: ComponentChildren;
  onConfirmed?: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState(false);
  const [err, setErr] = useState<ApiError | null>(null);
  const id = `waiting-h-${("plan" in p.target ? p.target.step : p.target.signal).replace(/[^\w-]/g, "-")}`;
  const go = async () => {
    if (busy || sent) return;
    setBusy(true);
    setErr(null);
    try {
      const accepted = await confirm(p.target);
      setSent(true);
      if (!accepted) setErr(new ApiError(409, "SIGNAL_ALREADY_SENT", "this confirmation was already sent"));
      p.onConfirmed?.();
    } catch (e) {
      setErr(e as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class={p.class} aria-labelledby={id}>
      <h2 id={id}>{p.title}</h2>
      {p.children}
      <ErrorBanner error={err} prefix="Not confirmed:" />
      <button type="button" class="primary" onClick={go} disabled={busy || sent} aria-busy={busy}>
        {sent ? "Confirmed" : busy ? "Confirming…" : "Done: confirm and go on"}
      </button>
    </section>
  );
}
