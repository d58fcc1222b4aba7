// Change recovery point, before commit: the failed-over machine stops and starts again from another
// point (only the blocks that differ are rewritten); what it wrote since the failover is lost.
import { useState } from "preact/hooks";
import {
  type ChangePointForm,
  changePointBody,
  initialPointForm,
  operationTitle,
  startWords,
  validateChangePoint,
} from "../lib/operation-rules.ts";
import { KeyValues } from "../ui/kit.tsx";
import {
  blockedWhy,
  DecisionPanel,
  hasErrors,
  type OperationDialogProps,
  OperationFrame,
  PointPicker,
  usePoints,
  usePreview,
  useStart,
} from "./common.tsx";

export function ChangePointDialog(p: OperationDialogProps) {
  const it = p.item;
  const [form, setForm] = useState<ChangePointForm>({ point: initialPointForm("change-point", p.point) });
  const points = usePoints(it);
  const errors = validateChangePoint(form, it, points.data);
  const body = changePointBody(form);
  const preview = usePreview(it, "change-point", hasErrors(errors) ? null : body);
  const starter = useStart(it, "change-point", p.onStarted);
  const f = it.failover;
  return (
    <OperationFrame
      title={`${operationTitle(it, "change-point")}: ${it.name}`}
      startWords={startWords(it, "change-point")}
      wide
      blocked={blockedWhy(preview, body, errors, starter.busy)}
      busy={starter.busy}
      startError={starter.error}
      onStart={() => starter.start(body)}
      onClose={p.onClose}
    >
      <p class="lead">
        The machine at <strong>{it.target}</strong> stops and restarts from the point you choose; only the
        blocks that differ are rewritten.
      </p>
      <div class="banner banner-warn" role="note">
        Anything the machine wrote since the failover is lost. The failover is still not committed: you can
        change the point again, or commit once the machine is right.
      </div>
      {f !== null && (
        <KeyValues
          rows={[
            ["Runs now from point", <code key="p">{f.point}</code>],
            ["At", it.target],
          ]}
        />
      )}
      <PointPicker
        op="change-point"
        form={form.point}
        onChange={(point) => setForm({ point })}
        points={points.data}
        pointsError={points.error}
        error={errors.point}
        current={f?.point ?? null}
        autofocus
      />
      <DecisionPanel preview={preview} waitingWhy="Choose the point to restart from." />
    </OperationFrame>
  );
}
