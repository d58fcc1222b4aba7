// Failover, and failback (the same operation when it brings the machine home): the direction in
// words, the point with its RPO/RTO trade-off, shut the machine down first, the warning that
// replication stops and that it cannot be cancelled, and the item's name typed before it starts.
import { useState } from "preact/hooks";
import { client, ok } from "../api/client.ts";
import { useLive } from "../lib/live.ts";
import {
  type FailoverForm,
  failoverBody,
  initialPointForm,
  isFailback,
  operationTitle,
  startWords,
  validateFailover,
} from "../lib/operation-rules.ts";
import {
  blockedWhy,
  ConfirmName,
  DecisionPanel,
  hasErrors,
  type OperationDialogProps,
  OperationFrame,
  PointPicker,
  usePoints,
  usePreview,
  useStart,
} from "./common.tsx";

export function FailoverDialog(p: OperationDialogProps) {
  const it = p.item;
  const back = isFailback(it);
  const word = back ? "failback" : "failover";
  const [form, setForm] = useState<FailoverForm>({
    point: initialPointForm("failover", p.point),
    shutdownSource: true,
    confirm: "",
  });
  const points = usePoints(it);
  const machine = useLive(
    () => ok(client.GET("/v1/machines/{machine}", { params: { path: { machine: it.machineId } } })),
    0,
    [it.machineId],
  );
  const errors = validateFailover(form, it, points.data);
  // the name typed changes nothing the vault decides: it is not part of the preview
  const { confirm: _c, ...pointErrors } = errors;
  const body = failoverBody(form);
  const preview = usePreview(it, "failover", hasErrors(pointErrors) ? null : body);
  const starter = useStart(it, "failover", p.onStarted);
  const direction = preview.decision?.direction ?? it.direction;
  const liveness = machine.data?.health.liveness;
  const blocked = blockedWhy(preview, body, errors, starter.busy);
  return (
    <OperationFrame
      title={`${operationTitle(it, "failover")}: ${it.name}`}
      startWords={startWords(it, "failover")}
      danger
      wide
      blocked={blocked}
      busy={starter.busy}
      startError={starter.error}
      onStart={() => starter.start(body)}
      onClose={p.onClose}
    >
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
      <PointPicker
        op="failover"
        form={form.point}
        onChange={(point) => setForm({ ...form, point })}
        points={points.data}
        pointsError={points.error}
        error={errors.point}
        autofocus
      />
      <label class="check">
        <input
          type="checkbox"
          checked={form.shutdownSource}
          onChange={(e) => setForm({ ...form, shutdownSource: e.currentTarget.checked })}
        />
        <span>
          Shut down the machine before beginning {word}
          <small>
            Stops writes at {it.source}, so nothing is written after the point and two copies never serve at
            once. Best effort: the {word} goes on if the shutdown fails.{" "}
            {liveness === undefined
              ? ""
              : liveness === "online"
                ? `Its agent at ${machine.data?.site ?? it.source} is online.`
                : `Its agent is ${liveness}: the shutdown will likely fail, and the machine is fenced if it comes back.`}
          </small>
        </span>
      </label>
      <DecisionPanel preview={preview} waitingWhy="Choose a recovery point to see what the vault would do." />
      <ConfirmName
        item={it}
        value={form.confirm}
        onInput={(confirm) => setForm({ ...form, confirm })}
        error={errors.confirm}
        what={`The ${word} cannot be cancelled once it has begun.`}
      />
    </OperationFrame>
  );
}
