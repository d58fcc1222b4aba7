// The dialogs that start a plan operation. Each says what will happen to each group, in the order the
// run takes them: the actions that run for this operation (a manual step is where the run waits for
// you), and for every machine the vault's own decision (a dry run of the machine's operation with the
// dialog's choices) or its refusal with the named reason, before anything starts. Failover and
// failback add the point choice, the shutdown of the source, the direction in words, the warning that
// it cannot be undone, and the plan's name typed to confirm; commit asks for the name too.
import { useEffect, useRef, useState } from "preact/hooks";
import { type ApiError, client, type ItemView, ok, type Plan } from "../api/client.ts";
import { duration } from "../lib/format.ts";
import { POINT_WORDS } from "../lib/operation-rules.ts";
import {
  initialPlanOptions,
  PLAN_OPERATION_WORDS,
  type PlanOperation,
  type PlanOptions,
  type PlanPoint,
  planCheckKey,
  planNameTyped,
  planOperationBody,
  planPointChoices,
  planStartGate,
  runOrder,
} from "../lib/plan-edit.ts";
import { Badge, Dialog, ErrorBanner, Field } from "../ui/kit.tsx";
import { ActionText } from "./plan-run.tsx";

const INTRO: Record<PlanOperation, string> = {
  "test-failover":
    "A drill: a copy of every machine starts at its recovery site, group by group, on its test network. Production keeps running and replicating.",
  "test-failover-cleanup":
    "Removes the drill copies of every machine and their disks, all groups at once. Production is not touched.",
  failover:
    "Moves every machine to its recovery site, group by group: each one starts there from the chosen point and stops replicating.",
  commit:
    "Makes the failover (or failback) of every machine final, all groups at once: what each machine loses is listed below, and its point can no longer be changed.",
  reprotect:
    "Every machine starts replicating back from where it runs now to its original location, group by group, so it can fail back later.",
  failback:
    "Brings every machine home, group by group: each one starts at its home site from the chosen point and stops replicating from the recovery site.",
};

/** Operations that cannot be undone: the plan's name must be typed. */
const TYPE_NAME: ReadonlySet<PlanOperation> = new Set(["failover", "failback", "commit"]);

type Verdict =
  | { state: "checking" }
  | { state: "ok"; decision: { direction: string; consequences: string[] } }
  | { state: "refused"; code: string; message: string };

/**
 * The vault's decision for each machine of the plan with these choices: one dry run of the plan
 * operation (POST /v1/plans/{plan}/{op}?dryRun=true), which picks each machine's own operation and
 * decides it exactly as the job will. Asked again whenever `key` changes (the body, the plan, a
 * machine's state: planCheckKey). Only verdicts asked with the current key count: until they come,
 * every machine is "checking", so a start can never go with choices the vault has not judged.
 */
function useVerdicts(
  plan: Plan,
  op: PlanOperation,
  body: Record<string, unknown>,
  key: string,
): Map<string, Verdict> {
  const [got, setGot] = useState<{ key: string; verdicts: Map<string, Verdict> }>({
    key: "",
    verdicts: new Map(),
  });
  useEffect(() => {
    let stale = false;
    setGot({ key, verdicts: new Map() });
    const path = `/v1/plans/{plan}/${op}` as "/v1/plans/{plan}/failover";
    const t = setTimeout(() => {
      ok(
        client.POST(path, {
          params: { path: { plan: plan.id }, query: { dryRun: true } },
          body: body as never,
        }),
      ).then(
        (r) => {
          if (stale) return;
          const verdicts = new Map<string, Verdict>();
          for (const m of r.machines ?? []) {
            verdicts.set(
              m.itemId,
              m.refused !== null
                ? { state: "refused", code: m.refused.code, message: m.refused.message }
                : { state: "ok", decision: m.decision ?? { direction: "", consequences: [] } },
            );
          }
          setGot({ key, verdicts });
        },
        (err: ApiError) => {
          if (stale) return;
          // the plan itself refused (no groups, vault starting): every machine carries that refusal
          const all = plan.groups.flatMap((g) => g.items);
          setGot({
            key,
            verdicts: new Map(
              all.map((pi) => [pi.id, { state: "refused", code: err.code, message: err.message }]),
            ),
          });
        },
      );
    }, 250);
    return () => {
      stale = true;
      clearTimeout(t);
    };
  }, [key]);
  return got.key === key ? got.verdicts : NONE;
}

const NONE: Map<string, Verdict> = new Map();

function oldest(items: ItemView[], pick: (it: ItemView) => { ageSeconds: number } | null): string {
  const ages = items.map(pick);
  if (ages.some((a) => a === null)) return "some machines have none";
  const worst = Math.max(...ages.map((a) => a?.ageSeconds ?? 0));
  return items.length === 0 ? "" : `oldest of them ${duration(worst)} old`;
}

function PointChoice(p: {
  op: PlanOperation;
  items: ItemView[];
  value: PlanPoint;
  disabled: boolean;
  onChange: (v: PlanPoint) => void;
}) {
  const choices = planPointChoices(p.op) ?? [];
  const age = (c: PlanPoint) =>
    c === "latest"
      ? "cut when the operation starts"
      : c === "latest-processed"
        ? oldest(p.items, (it) => it.latestPoint)
        : oldest(p.items, (it) => it.latestAppConsistentPoint);
  return (
    <fieldset disabled={p.disabled}>
      <legend>Recovery point of every machine</legend>
      {choices.map((c) => (
        <label key={c} class="radio">
          <input
            type="radio"
            name="plan-point"
            value={c}
            checked={p.value === c}
            onChange={() => p.onChange(c)}
          />
          <span>
            <strong>{POINT_WORDS[c].label}</strong> <span class="muted">({age(c)})</span>
            <small>{POINT_WORDS[c].tradeOff}</small>
          </span>
        </label>
      ))}
    </fieldset>
  );
}

function VerdictLine(p: { name: string; v: Verdict | undefined }) {
  const v = p.v ?? { state: "checking" };
  return (
    <li class="plan-verdict">
      <strong>{p.name}</strong>{" "}
      {v.state === "checking" ? (
        <span class="muted">asking the vault…</span>
      ) : v.state === "ok" ? (
        <>
          <Badge tone="ok">will run</Badge> <span>{v.decision.direction}</span>
          {v.decision.consequences.length > 0 && (
            <span class="muted"> · {v.decision.consequences.join("; ")}</span>
          )}
        </>
      ) : (
        <>
          <Badge tone="bad">refused</Badge> <code>{v.code}</code> <span class="muted">{v.message}</span>
        </>
      )}
    </li>
  );
}

export function PlanOperationDialog(p: {
  plan: Plan;
  op: PlanOperation;
  items: ReadonlyMap<string, ItemView>;
  onClose: () => void;
  onStarted: (jobId: string) => void;
}) {
  const { plan, op } = p;
  const [o, setO] = useState<PlanOptions>(() => initialPlanOptions(op));
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const inFlight = useRef(false);
  const [error, setError] = useState<ApiError | null>(null);
  const body = planOperationBody(op, o);
  const key = planCheckKey(plan, op, body, p.items);
  const verdicts = useVerdicts(plan, op, body, key);
  const all = plan.groups.flatMap((g) => g.items);
  const views = all.flatMap((pi) => {
    const v = p.items.get(pi.id);
    return v !== undefined ? [v] : [];
  });
  const vs = all.map((pi) => verdicts.get(pi.id));
  const checking = vs.filter((v) => v === undefined || v.state === "checking").length;
  const refused = vs.filter((v) => v?.state === "refused").length;
  const willRun = vs.filter((v) => v?.state === "ok").length;
  const directions = [
    ...new Set(
      vs.flatMap((v) => (v?.state === "ok" && v.decision.direction !== "" ? [v.decision.direction] : [])),
    ),
  ];
  const stages = runOrder(
    { groups: plan.groups.map((g) => ({ items: g.items, pre: g.pre, post: g.post })) },
    op,
  );
  const needsName = TYPE_NAME.has(op);
  const nameOk = !needsName || planNameTyped(typed, plan.name);
  const failoverLike = op === "failover" || op === "failback";
  const gate = planStartGate({ op, total: all.length, checking, willRun, nameOk, busy });
  const start = async () => {
    // one start at a time (a double click, Enter held down), and only with verdicts of this body
    if (inFlight.current || gate.disabled) return;
    inFlight.current = true;
    setBusy(true);
    setError(null);
    try {
      const path = `/v1/plans/{plan}/${op}` as "/v1/plans/{plan}/failover";
      const r = await ok(client.POST(path, { params: { path: { plan: plan.name } }, body: body as never }));
      if (r.job !== null) p.onStarted(r.job.id);
    } catch (err) {
      setError(err as ApiError);
      inFlight.current = false;
      setBusy(false);
    }
  };
  const label = PLAN_OPERATION_WORDS[op];
  return (
    <Dialog
      title={`${label}: plan ${plan.name}`}
      wide
      onClose={p.onClose}
      footer={
        <>
          {gate.why !== "" && <span class="muted plan-why">{gate.why}</span>}
          <button type="button" onClick={p.onClose}>
            Cancel
          </button>
          <button
            type="button"
            class={failoverLike || op === "commit" ? "danger" : "primary"}
            disabled={gate.disabled}
            aria-busy={busy}
            onClick={start}
          >
            {gate.label}
          </button>
        </>
      }
    >
      <p>{INTRO[op]}</p>
      {failoverLike && (
        <>
          <p class="direction">
            {directions.length === 0 ? "…" : directions.join(", ")}
            {directions.length > 1 && <span class="muted"> (the machines do not all go the same way)</span>}
          </p>
          <div class="banner banner-bad" role="note">
            <strong>This cannot be undone.</strong> Each machine's replication stops before its{" "}
            {label.toLowerCase()} begins, and once that has begun it cannot be cancelled. The groups go one
            after another; until you commit, a machine can still move to another point.
          </div>
          <PointChoice
            op={op}
            items={views}
            value={o.planned ? "latest" : o.point}
            disabled={o.planned}
            onChange={(point) => setO({ ...o, point })}
          />
          <label class="check">
            <input
              type="checkbox"
              checked={o.planned}
              onChange={(e) => setO({ ...o, planned: e.currentTarget.checked })}
            />
            <span>
              Planned: the machines at the source are healthy. Each is drained and shut down first, then{" "}
              {op === "failback" ? "fails back" : "fails over"} from the latest point: nothing is lost.
            </span>
          </label>
          <label class="check">
            <input
              type="checkbox"
              checked={o.planned || o.shutdownSource}
              disabled={o.planned}
              onChange={(e) => setO({ ...o, shutdownSource: e.currentTarget.checked })}
            />
            <span>
              Shut down the machines at the source before their {label.toLowerCase()} begins (best effort: the{" "}
              {label.toLowerCase()} goes on if one cannot be shut down).
            </span>
          </label>
        </>
      )}
      {op === "test-failover" && (
        <PointChoice
          op={op}
          items={views}
          value={o.point}
          disabled={false}
          onChange={(point) => setO({ ...o, point })}
        />
      )}
      {op === "test-failover-cleanup" && (
        <Field label="Notes on the drill (kept with each machine's cleanup job)">
          {(id) => (
            <textarea
              id={id}
              maxLength={4000}
              value={o.notes}
              onInput={(e) => setO({ ...o, notes: e.currentTarget.value })}
            />
          )}
        </Field>
      )}
      <h3>What happens, group by group</h3>
      <ol class="plan-preview">
        {stages.map((s) => (
          <li key={s.itemsStep}>
            <strong>
              {s.groups.length === 1 ? `Group ${(s.groups[0] as number) + 1}` : "All groups at once"}
            </strong>
            <ul>
              {s.pre.map((a) => (
                <li key={a.step} class={a.action.kind === "manual" ? "plan-preview-manual" : ""}>
                  Before: <ActionText a={a.action} />
                  {a.action.kind === "manual" && <Badge tone="warn">the run waits for you</Badge>}
                </li>
              ))}
              {s.groups.flatMap((g) =>
                (plan.groups[g]?.items ?? []).map((pi) => (
                  <VerdictLine key={pi.id} name={pi.name} v={verdicts.get(pi.id)} />
                )),
              )}
              {s.post.map((a) => (
                <li key={a.step} class={a.action.kind === "manual" ? "plan-preview-manual" : ""}>
                  After: <ActionText a={a.action} />
                  {a.action.kind === "manual" && <Badge tone="warn">the run waits for you</Badge>}
                </li>
              ))}
            </ul>
          </li>
        ))}
      </ol>
      {refused > 0 && checking === 0 && (
        <div class="banner banner-warn" role="status">
          The vault refuses {refused} of {all.length} machines now. The run counts a refusal as that machine's
          failure:{" "}
          {plan.continueOnError
            ? "the plan goes on (continue on error)"
            : "the plan stops at the first group with one"}
          .
        </div>
      )}
      {op === "commit" && (
        <div class="banner banner-bad" role="note">
          <strong>This cannot be undone.</strong> The recovery points each machine came from are deleted.
        </div>
      )}
      {needsName && (
        <Field
          label={`Type the plan's name, ${plan.name}, to confirm`}
          error={
            typed.trim() !== "" && !planNameTyped(typed, plan.name) ? "that is not the plan's name" : null
          }
        >
          {(id, describedBy, invalid) => (
            <input
              id={id}
              autoComplete="off"
              spellcheck={false}
              aria-describedby={describedBy}
              aria-invalid={invalid}
              value={typed}
              onInput={(e) => setTyped(e.currentTarget.value)}
            />
          )}
        </Field>
      )}
      <ErrorBanner error={error} prefix="The vault refused:" />
    </Dialog>
  );
}
