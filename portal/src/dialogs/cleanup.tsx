// Test failover cleanup: the drill copy and its disks are removed; the notes (what the drill showed)
// stay with the cleanup job.
import { useState } from "preact/hooks";
import { type CleanupForm, cleanupBody, NOTES_MAX, validateCleanup } from "../lib/operation-rules.ts";
import { Field, KeyValues } from "../ui/kit.tsx";
import { DecisionPanel, type OperationDialogProps, OperationFrame, useOperationDialog } from "./common.tsx";

export function CleanupDialog(p: OperationDialogProps) {
  const it = p.item;
  const [form, setForm] = useState<CleanupForm>({ notes: "" });
  const errors = validateCleanup(form);
  // the notes change nothing the vault decides (their length is checked here): asked once
  const dlg = useOperationDialog(p, { errors, body: cleanupBody(form), previewBody: {} });
  const d = it.drill;
  const over = form.notes.length > NOTES_MAX;
  return (
    <OperationFrame {...dlg.frame}>
      <p class="lead">
        Removes the drill copy of {it.name} and its disks at {it.target}. Replication and the machine at{" "}
        {it.source} are not touched.
      </p>
      {d !== null && (
        <KeyValues
          rows={[
            ["Drill copy", <code key="i">{d.instanceId}</code>],
            ["Started from point", <code key="p">{d.point}</code>],
            ["Runs at", it.target],
          ]}
        />
      )}
      <Field
        label="Notes"
        hint={
          <span class={over ? "counter counter-over" : "counter"}>
            What the drill showed, kept with the cleanup job. {form.notes.length} / {NOTES_MAX} characters
          </span>
        }
        error={errors.notes}
      >
        {(id, describedBy, invalid) => (
          <textarea
            id={id}
            rows={5}
            value={form.notes}
            autofocus
            aria-describedby={describedBy}
            aria-invalid={invalid}
            onInput={(e) => setForm({ notes: e.currentTarget.value })}
          />
        )}
      </Field>
      <DecisionPanel {...dlg.panel} />
    </OperationFrame>
  );
}
