// Test failover (a drill): a copy of the machine starts at the target from the chosen point, on the
// item's test network, isolated from production; replication goes on untouched.
import { useState } from "preact/hooks";
import {
  initialPointForm,
  type TestFailoverForm,
  testFailoverBody,
  validateTestFailover,
} from "../lib/operation-rules.ts";
import { Field, KeyValues } from "../ui/kit.tsx";
import {
  DecisionPanel,
  type OperationDialogProps,
  OperationFrame,
  PointPicker,
  useOperationDialog,
  usePoints,
} from "./common.tsx";

export function TestFailoverDialog(p: OperationDialogProps) {
  const it = p.item;
  const [form, setForm] = useState<TestFailoverForm>({ point: initialPointForm("test-failover", p.point) });
  const points = usePoints(it);
  const errors = validateTestFailover(form, it, points.data);
  const d = useOperationDialog(p, { errors, body: testFailoverBody(form) });
  const s = it.targetSettings;
  return (
    <OperationFrame {...d.frame} wide>
      <p class="lead">
        A drill: a copy of {it.name} starts at <strong>{it.target}</strong> from the point below, to check
        that it boots and its applications work.
      </p>
      <div class="banner banner-info" role="note">
        The drill copy runs isolated on the test network, never on production. Replication {it.direction} goes
        on and the machine at {it.source} keeps running. Clean the drill up when you are done.
      </div>
      <Field
        label="Test network"
        hint={
          s.testNetwork !== undefined
            ? `empty: the item's test network, ${s.testNetwork}`
            : `empty: the test network of ${it.target} (set the item's own in Compute and network)`
        }
        error={errors.testNetwork}
      >
        {(id, describedBy, invalid) => (
          <input
            id={id}
            value={form.testNetwork ?? ""}
            placeholder={s.testNetwork ?? ""}
            aria-describedby={describedBy}
            aria-invalid={invalid}
            onInput={(e) => setForm({ ...form, testNetwork: e.currentTarget.value })}
          />
        )}
      </Field>
      <KeyValues
        rows={[
          ["Production network", s.network !== undefined ? <code>{s.network}</code> : "not set"],
          ["Name of the copy", s.targetName ?? it.name],
        ]}
      />
      <PointPicker
        op="test-failover"
        form={form.point}
        onChange={(point) => setForm({ ...form, point })}
        points={points.data}
        pointsError={points.error}
        error={errors.point}
        autofocus
      />
      <DecisionPanel {...d.panel} waitingWhy="Choose a recovery point to see what the vault would do." />
    </OperationFrame>
  );
}
