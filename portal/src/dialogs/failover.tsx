// Failover, and failback (the same operation when it brings the machine home): the direction in
// words, planned or not, the point with its RPO/RTO trade-off, shut the machine down first, the
// warning that replication stops and that it cannot be cancelled, and the item's name typed before
// it starts. An item left failing over (its failover stopped after the point of no return) gets the
// resume variant instead: no choices, the request of the job that began it.
import { useState } from "preact/hooks";
import { client, ok } from "../api/client.ts";
import { useLive } from "../lib/live.ts";
import {
  type FailoverForm,
  failoverBody,
  failoverDefaultChoice,
  initialPointForm,
  isFailback,
  PLANNED_WORDS,
  type PointForm,
  resumeBody,
  validateFailover,
} from "../lib/operation-rules.ts";
import { KeyValues } from "../ui/kit.tsx";
import {
  ConfirmName,
  DecisionPanel,
  type OperationDialogProps,
  OperationFrame,
  PointPicker,
  useOperationDialog,
  usePoints,
} from "./common.tsx";

export function FailoverDialog(p: OperationDialogProps) {
  // in failing-over the vault's failover resumes the one under way: another dialog, no choices
  return p.item.phase === "failing-over" ? <ResumeFailoverDialog {...p} /> : <StartFailoverDialog {...p} />;
}

function StartFailoverDialog(p: OperationDialogProps) {
  const it = p.item;
  const back = isFailback(it);
  const word = back ? "failback" : "failover";
  // null until the operator picks a point: then the default follows the source machine's agent
  const [chosen, setChosen] = useState<PointForm | null>(
    p.point !== undefined && p.point !== "" ? initialPointForm("failover", p.point) : null,
  );
  const [rest, setRest] = useState({ shutdownSource: true, planned: false, confirm: "" });
  const points = usePoints(it);
  const machine = useLive(
    () => ok(client.GET("/v1/machines/{machine}", { params: { path: { machine: it.machineId } } })),
    0,
    [it.machineId],
  );
  const liveness = machine.data?.health.liveness;
  const form: FailoverForm = {
    ...rest,
    point: chosen ?? { choice: failoverDefaultChoice(liveness), custom: "" },
  };
  const errors = validateFailover(form, it, points.data);
  const d = useOperationDialog(p, {
    errors,
    body: failoverBody(form),
    // the default point depends on the agent: ask the vault once it is known
    ready: chosen !== null || machine.data !== undefined || machine.error !== null,
  });
  const direction = d.preview.decision?.direction ?? it.direction;
  return (
    <OperationFrame {...d.frame} danger wide>
      <p class="direction">
        <span class="direction-label">Direction</span> {direction}
      </p>
      <p class="lead">
        {back
          ? `Brings ${it.name} home: it stops running at ${it.source} and starts at ${it.target} from the point below.`
          : `${it.name} starts at ${it.target} from the point below, instead of running at ${it.source}.`}
      </p>
      <div class="banner banner-warn" role="note">
        <strong>
          Replication {direction} stops before the {word} begins.
        </strong>{" "}
        Once it has begun the {word} cannot be cancelled: stopping it half-way would leave the machine
        unprotected. Afterwards, check the machine, then commit (or change the point).
      </div>
      <label class="check">
        <input
          type="checkbox"
          checked={form.planned}
          onChange={(e) => setRest({ ...rest, planned: e.currentTarget.checked })}
        />
        <span>
          Planned {word}
          <small>{PLANNED_WORDS(it.source, word)}</small>
        </span>
      </label>
      <PointPicker
        op="failover"
        form={form.planned ? { choice: "latest", custom: "" } : form.point}
        onChange={setChosen}
        points={points.data}
        pointsError={points.error}
        error={form.planned ? undefined : errors.point}
        autofocus
        {...(form.planned ? { fixedWhy: `A planned ${word} always uses Latest.` } : {})}
      />
      <label class="check">
        <input
          type="checkbox"
          checked={form.planned || form.shutdownSource}
          disabled={form.planned}
          onChange={(e) => setRest({ ...rest, shutdownSource: e.currentTarget.checked })}
        />
        <span>
          Shut down the machine before beginning {word}
          <small>
            {form.planned
              ? `A planned ${word} always shuts it down, after its final point. `
              : `Stops writes at ${it.source}, so nothing is written after the point and two copies never serve at once. Best effort: the ${word} goes on if the shutdown fails. `}
            {liveness === undefined
              ? ""
              : liveness === "online"
                ? `Its agent at ${machine.data?.site ?? it.source} is online.`
                : `Its agent is ${liveness}: the shutdown will likely fail, and the machine is fenced if it comes back.`}
          </small>
        </span>
      </label>
      <DecisionPanel {...d.panel} waitingWhy="Choose a recovery point to see what the vault would do." />
      <ConfirmName
        item={it}
        value={form.confirm}
        onInput={(confirm) => setRest({ ...rest, confirm })}
        error={errors.confirm}
        attempted={d.attempted}
        what={`The ${word} cannot be cancelled once it has begun.`}
      />
    </OperationFrame>
  );
}

/**
 * Resume: the failover stopped after replication had stopped (phase failing-over), so it can only go
 * on. The vault resumes it when asked to fail over again; the request is the one of the job that
 * began it, so the point it chose is chosen again.
 */
function ResumeFailoverDialog(p: OperationDialogProps) {
  const it = p.item;
  const word = isFailback(it) ? "failback" : "failover";
  const jobs = useLive(
    () => ok(client.GET("/v1/jobs", { params: { query: { item: it.id, limit: 50 } } })),
    0,
    [it.id],
  );
  const began = jobs.data?.find((j) => j.kind === "failover");
  const body = resumeBody(began?.params);
  const d = useOperationDialog(p, {
    errors: {},
    body,
    ready: jobs.data !== undefined || jobs.error !== null,
    title: `Resume ${word}: ${it.name}`,
    startWords: `Resume ${word}`,
  });
  return (
    <OperationFrame {...d.frame} wide>
      <p class="direction">
        <span class="direction-label">Direction</span> {it.direction}
      </p>
      <p class="lead">
        The {word} of {it.name} to <strong>{it.target}</strong> stopped after replication had stopped, so it
        cannot go back: resuming takes it on from the step where it stopped. Nothing is chosen again.
      </p>
      {jobs.data !== undefined && (
        <KeyValues
          rows={[
            [`Begun by job`, began !== undefined ? <code key="j">{began.id}</code> : "not found"],
            [
              "Point requested",
              typeof body.point === "string" ? (
                <code key="p">{body.point}</code>
              ) : (
                "the vault's default (latest)"
              ),
            ],
          ]}
        />
      )}
      <DecisionPanel {...d.panel} waitingWhy="Looking up the job that began it…" />
    </OperationFrame>
  );
}
