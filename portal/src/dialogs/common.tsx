// What every operation dialog shares: the dry run that previews the vault's decision (on open, and
// again a moment after each change), the start call, the point picker, the typed-name confirmation,
// and the frame with its footer (why Start is off, Cancel, Start). useOperationDialog wires them, so
// a dialog holds only its own fields and words.
import type { ComponentChildren } from "preact";
import { useEffect, useId, useRef, useState } from "preact/hooks";
import {
  type ApiError,
  client,
  type Decision,
  type ItemView,
  type Operation,
  ok,
  type PointView,
} from "../api/client.ts";
import { time } from "../lib/format.ts";
import { useLive } from "../lib/live.ts";
import {
  isRefusalError,
  NEEDS_RUNNING_MACHINE,
  operationTitle,
  POINT_CHOICES,
  POINT_WORDS,
  type PointForm,
  type PointOp,
  pinPoint,
  pointAgeWords,
  pointOptionText,
  pointPinWords,
  REFUSAL_ADVICE,
  startWords,
} from "../lib/operation-rules.ts";
import { Badge, Dialog, ErrorBanner, Field } from "../ui/kit.tsx";

export interface OperationDialogProps {
  item: ItemView;
  op: Operation;
  /** a point picked on the timeline, for the operations that take one */
  point?: string;
  onClose: () => void;
  onStarted: (job: { id: string }) => void;
}

export type Started = { job: { id: string; kind: string; state: string } | null; decision: Decision };

/** POST /v1/items/{item}/<op>, as a dry run or for real. */
export function runOperation(
  item: string,
  op: Operation,
  body: Record<string, unknown>,
  dryRun: boolean,
): Promise<Started> {
  // every operation has the same path shape and answer; the body is checked by the forms
  const path = `/v1/items/{item}/${op}` as "/v1/items/{item}/failover";
  return ok(
    client.POST(path, {
      params: { path: { item }, ...(dryRun ? { query: { dryRun: true } } : {}) },
      body: body as never,
    }),
  );
}

export interface Preview {
  /** waiting: the form is not valid, so the vault was not asked */
  state: "checking" | "ok" | "refused" | "failed" | "waiting";
  decision: Decision | null;
  error: ApiError | null;
  /** the request the answer is for (JSON) */
  key: string | null;
  recheck: () => void;
}

export const keyOf = (body: Record<string, unknown> | null): string | null =>
  body === null ? null : JSON.stringify(body);

/**
 * What of the item can change the vault's answer: its phase, its generation and the operations it
 * allows (empty while a job runs on it). Not updatedAt: it moves with every new recovery point.
 */
export const itemStateKey = (item: Pick<ItemView, "phase" | "generation" | "allowedOperations">): string =>
  `${item.phase}|${item.generation}|${item.allowedOperations.join(",")}`;

/**
 * The vault's dry run of the operation with `body` (null: do not ask, the form is invalid): at once
 * when the dialog opens, then `delayMs` after the last change, and again when the item's state
 * changes (itemStateKey). Answers to older requests are dropped.
 */
export function usePreview(
  item: ItemView,
  op: Operation,
  body: Record<string, unknown> | null,
  delayMs = 350,
): Preview {
  const key = keyOf(body);
  const [s, setS] = useState<Omit<Preview, "recheck">>({
    state: key === null ? "waiting" : "checking",
    decision: null,
    error: null,
    key: null,
  });
  const [nonce, setNonce] = useState(0);
  const state = itemStateKey(item);
  const seq = useRef(0);
  const asked = useRef(false);
  useEffect(() => {
    const mine = ++seq.current;
    if (key === null) {
      setS((x) => ({ ...x, state: "waiting", key: null }));
      return;
    }
    setS((x) => ({ ...x, state: "checking" }));
    const wait = asked.current ? delayMs : 0;
    asked.current = true;
    const timer = setTimeout(() => {
      runOperation(item.id, op, JSON.parse(key) as Record<string, unknown>, true).then(
        (r) => {
          if (mine === seq.current) setS({ state: "ok", decision: r.decision, error: null, key });
        },
        (err: ApiError) => {
          if (mine !== seq.current) return;
          setS({ state: isRefusalError(err) ? "refused" : "failed", decision: null, error: err, key });
        },
      );
    }, wait);
    return () => clearTimeout(timer);
  }, [key, nonce, item.id, state, op, delayMs]);
  return { ...s, recheck: () => setNonce((n) => n + 1) };
}

/** True when the preview is a yes for exactly this request. */
export function previewAllows(p: Preview, body: Record<string, unknown> | null): boolean {
  return p.state === "ok" && p.key !== null && p.key === keyOf(body);
}

/** Starts the operation; calls onStarted with its job, or holds the vault's error. */
export function useStart(
  item: ItemView,
  op: Operation,
  onStarted: (job: { id: string }) => void,
): { busy: boolean; error: ApiError | null; start: (body: Record<string, unknown>) => Promise<void> } {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  // two quick Enters arrive before the disabled button renders: one start only
  const inFlight = useRef(false);
  const start = async (body: Record<string, unknown>) => {
    if (inFlight.current) return;
    inFlight.current = true;
    setBusy(true);
    setError(null);
    try {
      const r = await runOperation(item.id, op, body, false);
      if (r.job === null) throw new Error("the vault started no job");
      onStarted({ id: r.job.id });
    } catch (err) {
      setError(err as ApiError);
      setBusy(false);
      inFlight.current = false;
    }
  };
  return { busy, error, start };
}

/** The item's recovery points, newest first (loaded once per dialog). */
export function usePoints(item: ItemView) {
  return useLive(
    () => ok(client.GET("/v1/items/{item}/points", { params: { path: { item: item.id } } })),
    0,
    [item.id],
  );
}

/** The short line that says where the dry run stands (the dialog's one live region). */
export function previewStatus(pr: Preview): string {
  switch (pr.state) {
    case "waiting":
      return "";
    case "checking":
      return "Checking with the vault…";
    case "refused":
      return `The vault refuses this: ${pr.error?.code ?? ""}`;
    case "failed":
      return "Could not check with the vault";
    case "ok":
      return "The vault allows this";
  }
}

/** Starts the item's machine where it is now (a refusal that wants it running), then checks again. */
function StartMachine(p: { machine: string; recheck: () => void }) {
  const [state, setState] = useState<"idle" | "starting" | "started">("idle");
  const [error, setError] = useState<ApiError | null>(null);
  const start = async () => {
    setState("starting");
    setError(null);
    try {
      await ok(client.POST("/v1/machines/{machine}/start", { params: { path: { machine: p.machine } } }));
      setState("started");
      p.recheck();
    } catch (err) {
      setError(err as ApiError);
      setState("idle");
    }
  };
  return (
    <div class="start-machine">
      <button type="button" onClick={start} disabled={state === "starting"}>
        {state === "starting" ? "Starting the machine…" : "Start the machine"}
      </button>
      {state === "started" && (
        <span class="muted">
          {" "}
          Started. If the vault still refuses, wait for its agent to report, then check again.
        </span>
      )}
      {error !== null && (
        <p class="start-machine-error">
          <strong>Could not start it:</strong> <code class="code">{error.code}</code> {error.message}
        </p>
      )}
    </div>
  );
}

/**
 * What the vault will do, or why it refuses: the dry run's answer, in words. Only the short status
 * line in its heading is live; the answer itself is read where it stands.
 */
export function DecisionPanel(p: {
  preview: Preview;
  item: Pick<ItemView, "machineId">;
  waitingWhy?: string;
  extraAdvice?: string;
}) {
  const headId = useId();
  const pr = p.preview;
  // while the vault is asked again, its last answer stays, dimmed, instead of flickering away
  const stale = pr.state === "checking";
  const refused = pr.error !== null && (pr.state === "refused" || (stale && isRefusalError(pr.error)));
  const failed = pr.error !== null && !refused && (pr.state === "failed" || stale);
  let body: ComponentChildren = null;
  if (pr.state === "waiting") {
    body = <p class="muted">{p.waitingWhy ?? "Complete the form to see what the vault would do."}</p>;
  } else if (refused && pr.error !== null) {
    const advice = REFUSAL_ADVICE[pr.error.code] ?? p.extraAdvice;
    body = (
      <div class={`banner banner-bad refusal${stale ? " stale" : ""}`}>
        <p class="refusal-head">
          <strong>The vault refuses this, so nothing will start:</strong>
        </p>
        <p>
          <code class="code">{pr.error.code}</code> {pr.error.message}
        </p>
        {advice !== undefined && <p class="refusal-advice">{advice}</p>}
        {NEEDS_RUNNING_MACHINE.has(pr.error.code) && (
          <StartMachine machine={p.item.machineId} recheck={pr.recheck} />
        )}
        <button type="button" onClick={pr.recheck}>
          Check again
        </button>
      </div>
    );
  } else if (failed && pr.error !== null) {
    body = (
      <div class={`banner banner-bad check-failed${stale ? " stale" : ""}`}>
        <p>
          <strong>Could not check with the vault:</strong> <code class="code">{pr.error.code}</code>{" "}
          {pr.error.message}
        </p>
        <button type="button" onClick={pr.recheck}>
          Check again
        </button>
      </div>
    );
  } else if (pr.decision !== null) {
    const d = pr.decision;
    const requested = pr.key === null ? undefined : (JSON.parse(pr.key) as { point?: unknown }).point;
    const pin = pointPinWords(requested, d, time);
    body = (
      <div class={stale ? "decision stale" : "decision"}>
        <ul class="consequences">
          {d.consequences.map((c) => (
            <li key={c}>{c}</li>
          ))}
        </ul>
        {pin !== null && <p class="decision-point">{pin}</p>}
        <p class="decision-flags">
          {d.irreversible ? (
            <Badge tone="bad">cannot be cancelled once started</Badge>
          ) : (
            <Badge tone="muted">can be cancelled from its job</Badge>
          )}
          {d.drain && <Badge tone="info">cuts a new point first</Badge>}
          {d.shutdownSource && <Badge tone="warn">shuts the source machine down first</Badge>}
        </p>
      </div>
    );
  }
  return (
    <section class="decision-panel" aria-labelledby={headId} aria-busy={stale}>
      <div class="decision-head">
        <h3 id={headId}>What the vault will do</h3>
        <span class="decision-status" role="status">
          {previewStatus(pr)}
        </span>
      </div>
      {body}
    </section>
  );
}

/** Why Start is off, in a few words, for the footer; null: it may start. */
export function blockedWhy(
  preview: Preview,
  body: Record<string, unknown> | null,
  errors: Record<string, string | undefined>,
  busy: boolean,
): string | null {
  if (busy) return "Starting…";
  if (preview.state === "refused") return `Refused: ${preview.error?.code ?? ""}`;
  if (preview.state === "failed") return "The vault could not check it";
  const fieldErrors = Object.entries(errors).filter(([, v]) => v !== undefined);
  if (fieldErrors.length === 1 && fieldErrors[0]?.[0] === "confirm") return "Type the item's name to confirm";
  if (fieldErrors.length > 0) return "Fix what is marked above";
  // a yes for an earlier form is not a yes for this one
  if (!previewAllows(preview, body)) return "Checking with the vault…";
  return null;
}

/** What useOperationDialog hands the frame. */
export interface FrameProps {
  title: string;
  startWords: string;
  blocked: string | null;
  busy: boolean;
  startError: ApiError | null;
  onStart: () => void;
  /** Enter pressed in a field while Start is off: the fields say what is wrong */
  onBlockedSubmit: () => void;
  onClose: () => void;
}

/**
 * The dialog frame: title, body, footer with the reason Start is off, Cancel and Start. While the
 * start is under way it cannot be closed (Escape, Cancel and × are ignored): the job it starts must
 * reach onStarted.
 */
export function OperationFrame(
  p: FrameProps & { danger?: boolean; wide?: boolean; children: ComponentChildren },
) {
  const statusId = useId();
  const busy = useRef(p.busy);
  busy.current = p.busy;
  const close = () => {
    if (!busy.current) p.onClose();
  };
  return (
    <Dialog
      title={p.title}
      onClose={close}
      wide={p.wide ?? false}
      closeDisabled={p.busy}
      footer={
        <>
          <span class="dialog-status" id={statusId}>
            {p.blocked ?? ""}
          </span>
          <button type="button" onClick={close} disabled={p.busy}>
            Cancel
          </button>
          <button
            type="submit"
            form={`${statusId}-form`}
            class={p.danger ? "danger" : "primary"}
            disabled={p.blocked !== null || p.busy}
            aria-describedby={p.blocked !== null ? statusId : undefined}
          >
            {p.busy ? "Starting…" : p.startWords}
          </button>
        </>
      }
    >
      <form
        id={`${statusId}-form`}
        class="op-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (p.busy) return;
          if (p.blocked === null) p.onStart();
          else p.onBlockedSubmit();
        }}
        // Enter in a field while Start is off submits nothing (the browser skips a disabled default
        // button): it is still an attempt, so the fields say what is wrong
        onKeyDown={(e) => {
          const t = e.target as HTMLElement;
          if (e.key === "Enter" && t.tagName === "INPUT" && p.blocked !== null && !p.busy)
            p.onBlockedSubmit();
        }}
      >
        <ErrorBanner error={p.startError} prefix="Not started:" />
        {p.children}
      </form>
    </Dialog>
  );
}

export interface DialogSetup {
  /**
   * the form's errors by field: each holds Start back; they also hold the dry run back (the body is
   * not valid), except `confirm` (the typed name changes nothing the vault decides)
   */
  errors: Record<string, string | undefined>;
  /** the request Start sends (a keyword point is pinned to the one the dry run resolved) */
  body: Record<string, unknown>;
  /**
   * what the dry run asks when it is not `body` (cleanup: the notes change nothing it decides); it is
   * asked whatever the form's errors
   */
  previewBody?: Record<string, unknown>;
  /** false while something the form's default depends on is loading: the vault is not asked yet */
  ready?: boolean;
  title?: string;
  startWords?: string;
}

/**
 * One operation dialog's wiring: the dry run of its form, the start, why Start is off, and whether a
 * submit was tried. Returns the frame's props, the decision panel's, and the preview.
 */
export function useOperationDialog(p: OperationDialogProps, s: DialogSetup) {
  const { item, op } = p;
  const { confirm: _typed, ...formErrors } = s.errors;
  const asked = s.previewBody ?? s.body;
  const gated = s.previewBody === undefined && hasErrors(formErrors);
  const preview = usePreview(item, op, s.ready === false || gated ? null : asked);
  const starter = useStart(item, op, p.onStarted);
  const [attempted, setAttempted] = useState(false);
  const frame: FrameProps = {
    title: s.title ?? `${operationTitle(item, op)}: ${item.name}`,
    startWords: s.startWords ?? startWords(item, op),
    blocked: blockedWhy(preview, asked, s.errors, starter.busy),
    busy: starter.busy,
    startError: starter.error,
    onStart: () => starter.start(pinPoint(s.body, preview.decision?.point)),
    onBlockedSubmit: () => setAttempted(true),
    onClose: p.onClose,
  };
  return { preview, frame, panel: { preview, item }, attempted };
}

/** The recovery point: the keyword options with their trade-off and age, or one from the list. */
export function PointPicker(p: {
  op: PointOp;
  form: PointForm;
  onChange: (f: PointForm) => void;
  points: PointView[] | undefined;
  pointsError: ApiError | null;
  error: string | undefined;
  autofocus?: boolean;
  /** the point the machine runs from now (change point) */
  current?: string | null;
  /** the choice is made by another option (a planned failover): shown, not changeable, with why */
  fixedWhy?: string;
}) {
  const name = useId();
  const [touched, setTouched] = useState(false);
  const change = (f: PointForm) => {
    setTouched(true);
    p.onChange(f);
  };
  // "choose one" is said once the operator has picked the option, not the moment the dialog opens
  const showError = p.error !== undefined && (touched || p.form.choice !== "custom" || p.form.custom !== "");
  return (
    <fieldset class="point-picker" disabled={p.fixedWhy !== undefined}>
      <legend>Recovery point</legend>
      {p.fixedWhy !== undefined && <p class="point-fixed">{p.fixedWhy}</p>}
      {POINT_CHOICES[p.op].map((c) => (
        <label class="radio" key={c}>
          <input
            type="radio"
            name={name}
            value={c}
            checked={p.form.choice === c}
            autofocus={p.autofocus === true && p.form.choice === c}
            onChange={() => change({ ...p.form, choice: c })}
          />
          <span>
            <strong>{POINT_WORDS[c].label}</strong>
            {c !== "custom" && <span class="point-age"> · {pointAgeWords(c, p.points)}</span>}
            <small>{POINT_WORDS[c].tradeOff}</small>
          </span>
        </label>
      ))}
      <div class="point-custom">
        <Field
          label="Point to use"
          hint={
            p.points === undefined
              ? "Loading the item's points…"
              : p.points.length === 0
                ? "The item holds no recovery point yet."
                : `${p.points.length} points held, newest first. Picking one selects “A specific point”.`
          }
          error={showError ? p.error : undefined}
        >
          {(id, describedBy, invalid) => (
            <select
              id={id}
              value={p.form.choice === "custom" ? p.form.custom : ""}
              aria-describedby={describedBy}
              aria-invalid={invalid}
              disabled={p.points === undefined || p.points.length === 0}
              onChange={(e) => change({ choice: "custom", custom: e.currentTarget.value })}
            >
              <option value="">Choose a point…</option>
              {(p.points ?? []).map((pt) => (
                <option key={pt.id} value={pt.id}>
                  {pointOptionText(pt, time)}
                  {pt.id === p.current ? " · running now" : ""}
                </option>
              ))}
            </select>
          )}
        </Field>
      </div>
      <ErrorBanner error={p.pointsError} prefix="Could not load the points:" />
    </fieldset>
  );
}

/**
 * Type the item's name to enable the button of an operation that cannot be undone. A mismatch is
 * said once the field is left or a submit was tried (Enter), not at the first keystroke.
 */
export function ConfirmName(p: {
  item: ItemView;
  value: string;
  onInput: (v: string) => void;
  error: string | undefined;
  what: string;
  /** Enter was pressed in the form while Start was off (a submit attempt) */
  attempted: boolean;
  autofocus?: boolean;
}) {
  const [left, setLeft] = useState(false);
  // an empty field is not an error until a submit is tried: the hint says what to do
  const show = p.attempted || (left && p.value.trim() !== "");
  return (
    <div class="confirm-name">
      <Field
        label={`Type ${p.item.name} to confirm`}
        hint={`${p.what} The button stays off until the name matches.`}
        error={show ? p.error : undefined}
      >
        {(id, describedBy, invalid) => (
          <input
            id={id}
            value={p.value}
            autocomplete="off"
            spellcheck={false}
            autofocus={p.autofocus === true}
            aria-describedby={describedBy}
            aria-invalid={invalid}
            onInput={(e) => p.onInput(e.currentTarget.value)}
            onBlur={() => setLeft(true)}
          />
        )}
      </Field>
    </div>
  );
}

/** True when any field has an error (a key set to undefined is no error). */
export function hasErrors(e: Record<string, string | undefined>): boolean {
  return Object.values(e).some((v) => v !== undefined);
}
