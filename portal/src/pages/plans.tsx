// Recovery plans. The list: every plan with its groups, machines and last run (a run waiting for an
// operator stands out), and "New plan". A plan's page: the operations its machines' states allow (each
// a dialog that previews every machine's decision), the manual step a run waits at with Confirm, and
// tabs for the current or last run group by group (followed live), the definition, and the editor.
import { useReadOnly } from "../lib/me.ts";
import "./plans.css";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { type ApiError, client, type ItemView, ok, type Plan } from "../api/client.ts";
import { ago } from "../lib/format.ts";
import { isFinished, useJobFollow } from "../lib/job-follow.ts";
import { useLive } from "../lib/live.ts";
import {
  checkPlanName,
  itemTakesPart,
  PLAN_OPERATION_WORDS,
  PLAN_OPERATIONS,
  type PlanOperation,
  waitingAt,
} from "../lib/plan-edit.ts";
import { href, navigate, replaceQuery } from "../lib/router.ts";
import { jobTone } from "../lib/words.ts";
import { Badge, Dialog, Empty, ErrorBanner, Field, Loading, Tabs } from "../ui/kit.tsx";
import { WaitingPanel } from "../ui/waiting.tsx";
import { DefinitionView } from "./plan-definition.tsx";
import { PlanEditor, usePlanDraft } from "./plan-editor.tsx";
import { PlanOperationDialog } from "./plan-operations.tsx";
import { operationOfKind, RunHistory, RunView } from "./plan-run.tsx";

const ITEMS_EVERY_MS = 15_000;

function opWords(operation: string): string {
  const op = operationOfKind(operation);
  return op !== null ? PLAN_OPERATION_WORDS[op] : operation;
}

function NewPlanDialog(p: { onClose: () => void }) {
  const [name, setName] = useState("");
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const problem = checkPlanName(name.trim());
  const create = async (e?: Event) => {
    e?.preventDefault();
    setTouched(true);
    if (problem !== null) return;
    setBusy(true);
    setError(null);
    try {
      const plan = await ok(client.POST("/v1/plans", { body: { name: name.trim() } }));
      navigate(`/plans/${encodeURIComponent(plan.name)}`, { tab: "edit" });
    } catch (err) {
      setError(err as ApiError);
      setBusy(false);
    }
  };
  return (
    <Dialog
      title="New recovery plan"
      onClose={p.onClose}
      footer={
        <>
          <button type="button" onClick={p.onClose}>
            Cancel
          </button>
          <button type="submit" form="new-plan" class="primary" disabled={busy}>
            {busy ? "Creating…" : "Create and add groups"}
          </button>
        </>
      }
    >
      <form id="new-plan" onSubmit={create}>
        <Field
          label="Name"
          hint="Letters, digits, dots, dashes or underscores, e.g. erp or web-shop. You add groups next."
          error={touched ? problem : null}
        >
          {(id, describedBy, invalid) => (
            <input
              id={id}
              autoFocus
              autoComplete="off"
              aria-describedby={describedBy}
              aria-invalid={invalid}
              value={name}
              onInput={(e) => setName(e.currentTarget.value)}
              onBlur={() => setTouched(name !== "")}
            />
          )}
        </Field>
      </form>
      <ErrorBanner error={error} prefix="Not created:" />
    </Dialog>
  );
}

function LastRun(p: { plan: Plan }) {
  const r = p.plan.lastRun;
  if (r === null) return <span class="muted">never run</span>;
  return (
    <span class="plan-last-run">
      <a href={href(`/jobs/${r.jobId}`)}>{opWords(r.operation)}</a>{" "}
      <Badge tone={r.waiting !== null ? "warn" : jobTone(r.state)}>
        {r.waiting !== null ? "waiting for you" : r.state}
      </Badge>{" "}
      <span class="muted" title={r.startedAt ?? r.createdAt}>
        {ago(r.finishedAt ?? r.startedAt ?? r.createdAt)}
      </span>
      {r.error !== null && <span class="muted"> · {r.error.code}</span>}
    </span>
  );
}

export function PlansPage() {
  const readOnly = useReadOnly();
  const live = useLive(() => ok(client.GET("/v1/plans")), 5000, []);
  const [creating, setCreating] = useState(false);
  const plans = live.data;
  const waiting = (plans ?? []).filter((pl) => pl.lastRun?.waiting != null);
  return (
    <>
      <div class="page-head">
        <div>
          <h1>Recovery plans</h1>
          <p class="sub">
            {plans === undefined ? "…" : `${plans.length} plan${plans.length === 1 ? "" : "s"}`} · fail many
            machines over in order, with scripts and manual steps between them
          </p>
        </div>
        <div class="actions">
          {!readOnly && (
            <button type="button" class="primary" onClick={() => setCreating(true)}>
              New plan
            </button>
          )}
        </div>
      </div>
      <ErrorBanner error={live.error} prefix="The list could not be refreshed:" />
      {waiting.map((pl) => (
        <div key={pl.id} class="banner banner-warn" role="status">
          Plan <strong>{pl.name}</strong> waits for you: {pl.lastRun?.waiting?.message}{" "}
          <a href={href(`/plans/${encodeURIComponent(pl.name)}`)}>Open it to confirm</a>
        </div>
      ))}
      {plans === undefined ? (
        live.error === null && <Loading what="recovery plans" />
      ) : plans.length === 0 ? (
        <Empty
          title="No recovery plan yet"
          action={
            <button type="button" class="primary" onClick={() => setCreating(true)}>
              Create the first plan
            </button>
          }
        >
          <p>
            A recovery plan fails a whole application over in one go: its machines in groups that come up one
            after the other (the database before the servers that need it), with scripts and manual steps
            before and after each group, such as checking a service or switching DNS. Drill it with a test
            failover first; when the day comes, one failover runs it all and waits for you where you asked.
          </p>
          <p>Create a plan, add a group with its machines, then add the next groups and their actions.</p>
        </Empty>
      ) : (
        <div class="table-wrap">
          <table aria-label="Recovery plans">
            <thead>
              <tr>
                <th scope="col">Plan</th>
                <th scope="col" class="num">
                  Groups
                </th>
                <th scope="col" class="num">
                  Machines
                </th>
                <th scope="col">Last run</th>
                <th scope="col">Changed</th>
              </tr>
            </thead>
            <tbody>
              {plans.map((pl) => (
                <tr key={pl.id}>
                  <td>
                    <a href={href(`/plans/${encodeURIComponent(pl.name)}`)}>{pl.name}</a>
                  </td>
                  <td class="num">{pl.groups.length}</td>
                  <td class="num">{pl.groups.reduce((n, g) => n + g.items.length, 0)}</td>
                  <td>
                    <LastRun plan={pl} />
                  </td>
                  <td class="muted" title={pl.updatedAt}>
                    {ago(pl.updatedAt)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {creating && <NewPlanDialog onClose={() => setCreating(false)} />}
    </>
  );
}

function DeletePlanDialog(p: { plan: Plan; onClose: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const del = async () => {
    setBusy(true);
    setError(null);
    try {
      await ok(client.DELETE("/v1/plans/{plan}", { params: { path: { plan: p.plan.id } } }));
      navigate("/plans");
    } catch (err) {
      setError(err as ApiError);
      setBusy(false);
    }
  };
  return (
    <Dialog
      title={`Delete plan ${p.plan.name}?`}
      onClose={p.onClose}
      footer={
        <>
          <button type="button" onClick={p.onClose}>
            Keep it
          </button>
          <button type="button" class="danger" disabled={busy} onClick={del}>
            {busy ? "Deleting…" : "Delete the plan"}
          </button>
        </>
      }
    >
      <p>
        The plan goes; its machines are not touched and keep replicating, and its past runs stay in the jobs
        list. The vault refuses while a run of the plan is going on.
      </p>
      <ErrorBanner error={error} prefix="Not deleted:" />
    </Dialog>
  );
}

export function PlanPage(p: { plan: string; query: URLSearchParams }) {
  const readOnly = useReadOnly();
  const [fast, setFast] = useState(false);
  const live = useLive(
    () => ok(client.GET("/v1/plans/{plan}", { params: { path: { plan: p.plan } } })),
    fast ? 3000 : 10_000,
    [p.plan],
  );
  // every item (the editor's picker needs them all): a big read at 10,000 items, so every 15 s only,
  // and at once when a step of the run ends (that is when machines change state)
  const itemsLive = useLive(() => ok(client.GET("/v1/items")), ITEMS_EVERY_MS, []);
  const items = useMemo(
    () => new Map<string, ItemView>((itemsLive.data ?? []).map((it) => [it.id, it])),
    [itemsLive.data],
  );
  const plan = live.data;
  const draft = usePlanDraft(plan);
  const [dialog, setDialog] = useState<PlanOperation | "delete" | null>(null);
  const lastRun = plan?.lastRun ?? null;
  const runParam = p.query.get("run");
  const jobId = runParam ?? lastRun?.jobId ?? null;
  // a retry makes a finished run go on: follow it again
  const [session, setSession] = useState(0);
  const followed = useJobFollow(jobId, {
    session,
    onFinished: () => {
      live.reload();
      itemsLive.reload();
    },
  });
  // the last run is current when it has not finished, by the plan's view or by the job followed live
  const lastJob = followed.job !== undefined && followed.job.id === lastRun?.jobId ? followed.job : null;
  const runActive =
    lastRun !== null && (lastJob !== null ? !isFinished(lastJob.state) : !isFinished(lastRun.state));
  const waiting = !runActive ? null : lastJob !== null ? waitingAt(lastJob) : (lastRun?.waiting ?? null);
  useEffect(() => setFast(runActive), [runActive]);
  // each step the run ends changes machines' states: read them again at once
  const stepsEnded = (followed.job?.steps ?? []).filter(
    (st) => st.state === "succeeded" || st.state === "failed" || st.state === "skipped",
  ).length;
  const ended = useRef<{ job: string; n: number } | null>(null);
  useEffect(() => {
    const j = followed.job;
    if (j === undefined) return;
    const before = ended.current;
    ended.current = { job: j.id, n: stepsEnded };
    if (before !== null && before.job === j.id && stepsEnded > before.n) itemsLive.reload();
  }, [followed.job?.id, stepsEnded]);

  if (plan === undefined || draft === null) {
    if (live.error !== null && live.error.status === 404) {
      return (
        <Empty title={`There is no plan ${p.plan}`} action={<a href="#/plans">Back to the recovery plans</a>}>
          <p>It may have been deleted or renamed.</p>
        </Empty>
      );
    }
    return live.error !== null ? <ErrorBanner error={live.error} /> : <Loading what={`plan ${p.plan}`} />;
  }
  const machines = plan.groups.reduce((n, g) => n + g.items.length, 0);
  const tab =
    p.query.get("tab") ??
    (lastRun !== null || runParam !== null ? "run" : plan.groups.length === 0 ? "edit" : "definition");
  const planItems = plan.groups.flatMap((g) => g.items.map((it) => items.get(it.id)));
  const offered = PLAN_OPERATIONS.filter((op) =>
    planItems.some((it) => it !== undefined && itemTakesPart(op, it)),
  );
  const tabs = [
    ...(jobId !== null
      ? [{ id: "run", label: runActive && jobId === lastRun?.jobId ? "Current run" : "Last run" }]
      : []),
    { id: "definition", label: "Definition" },
    ...(readOnly ? [] : [{ id: "edit", label: draft.dirty ? "Edit (unsaved)" : "Edit" }]),
  ];
  const setTab = (t: string) => replaceQuery({ tab: t, run: runParam ?? undefined });
  return (
    <>
      <div class="crumbs">
        <a href="#/plans">Recovery plans</a> /
      </div>
      <div class="page-head">
        <div>
          <h1>
            {plan.name}{" "}
            {runActive && lastRun !== null && (
              <Badge tone={waiting !== null ? "warn" : "info"}>
                {opWords(lastRun.operation)} {waiting !== null ? "waiting for you" : "running"}
              </Badge>
            )}
          </h1>
          <p class="sub">
            {plan.groups.length} group{plan.groups.length === 1 ? "" : "s"} · {machines} machine
            {machines === 1 ? "" : "s"} · when a machine fails the run{" "}
            {plan.continueOnError ? "goes on" : "stops"}
            {lastRun !== null && !runActive && (
              <>
                {" "}
                · last run {opWords(lastRun.operation)} {lastRun.state}{" "}
                {ago(lastRun.finishedAt ?? lastRun.createdAt)}
              </>
            )}
          </p>
        </div>
        <fieldset class="actions">
          <legend class="sr-only">Plan operations</legend>
          {readOnly ? (
            <span class="muted">Read only: your token may not change anything.</span>
          ) : runActive ? (
            <span class="muted">A run is going on; operations come back when it ends.</span>
          ) : itemsLive.data === undefined ? null : offered.length === 0 ? (
            <span class="muted">
              {machines === 0
                ? "Add machines to run the plan."
                : "No plan operation is possible in its machines' states."}
            </span>
          ) : (
            offered.map((op) => (
              <button
                type="button"
                key={op}
                class={op === "failover" || op === "failback" ? "primary" : ""}
                onClick={() => setDialog(op)}
              >
                {PLAN_OPERATION_WORDS[op]}
              </button>
            ))
          )}
          {!readOnly && (
            <button type="button" class="plan-delete" onClick={() => setDialog("delete")}>
              Delete plan
            </button>
          )}
        </fieldset>
      </div>
      <ErrorBanner error={live.error} prefix="Could not refresh:" />
      {waiting !== null && !readOnly && (
        <WaitingPanel
          key={waiting.step}
          class="plan-waiting"
          target={{ plan: plan.name, step: waiting.step }}
          title={`Waiting for you: ${waiting.message || "a manual step"}`}
          onConfirmed={live.reload}
        >
          <p class="muted">
            Group {waiting.group}, {/-pre-/.test(waiting.step) ? "before" : "after"} its machines. The run
            stays here until someone confirms that this is done; then it goes on with the rest of the plan.
          </p>
        </WaitingPanel>
      )}
      <Tabs
        label="Plan"
        current={tabs.some((t) => t.id === tab) ? tab : "definition"}
        onChange={setTab}
        tabs={tabs}
      >
        {tab === "run" && jobId !== null ? (
          <>
            <RunView
              plan={plan.name}
              followed={followed}
              items={items}
              onChanged={() => {
                live.reload();
                setSession((n) => n + 1);
              }}
            />
            <RunHistory
              planId={plan.id}
              current={jobId}
              currentState={followed.job?.state ?? null}
              onPick={(id) => replaceQuery({ tab: "run", run: id === lastRun?.jobId ? undefined : id })}
            />
          </>
        ) : tab === "edit" ? (
          <PlanEditor
            plan={plan}
            state={draft}
            items={itemsLive.data}
            runActive={runActive}
            onSaved={(saved) => {
              if (saved.name !== p.plan)
                navigate(`/plans/${encodeURIComponent(saved.name)}`, { tab: "edit" });
              else live.reload();
            }}
          />
        ) : (
          <DefinitionView plan={plan} items={items} onEdit={() => setTab("edit")} />
        )}
      </Tabs>
      {dialog === "delete" && <DeletePlanDialog plan={plan} onClose={() => setDialog(null)} />}
      {dialog !== null && dialog !== "delete" && (
        <PlanOperationDialog
          plan={plan}
          op={dialog}
          items={items}
          onClose={() => setDialog(null)}
          onStarted={(id) => {
            setDialog(null);
            replaceQuery({ tab: "run", run: id });
            live.reload();
          }}
        />
      )}
    </>
  );
}
