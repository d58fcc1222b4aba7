// Change recovery point, before commit: the failed-over machine stops and starts again from another
// point (only the blocks that differ are rewritten); what it wrote since the failover is lost.
import { useState } from "preact/hooks";
import {
  type ChangePointForm,
  changePointBody,
  initialPointForm,
  validateChangePoint,
} from "../lib/operation-rules.ts";
import { KeyValues } from "../ui/kit.tsx";
import {
  DecisionPanel,
  type OperationDialogProps,
  OperationFrame,
  PointPicker,
  useOperationDialog,
  usePoints,
} from "./common.tsx";

export function ChangePointDialog(p: OperationDialogProps) {
  const it = p.item;
  const [form, setForm] = useState<ChangePointForm>({ point: initialPointForm("change-point", p.point) });
  const points = usePoints(it);
  const errors = validateChangePoint(form, it, points.data);
  const d = useOperationDialog(p, { errors, body: changePointBody(form) });
  const f = it.failover;
  return (
    <OperationFrame {...d.frame} wide>
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
      <DecisionPanel {...d.panel} waitingWhy="Choose the point to restart from." />
    </OperationFrame>
  );
}
