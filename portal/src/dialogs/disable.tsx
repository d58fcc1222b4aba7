// Disable replication: protection stops for good and the item is removed, with what it still holds
// (its recovery points); the machine itself keeps running wherever it runs now. The words follow the
// phase (after a committed failover nothing replicates and the machine runs at the target); the
// vault's dry run lists what it will do. The item's name is typed first.
import { useState } from "preact/hooks";
import { type ConfirmForm, disableWords, validateConfirmForm } from "../lib/operation-rules.ts";
import {
  ConfirmName,
  DecisionPanel,
  type OperationDialogProps,
  OperationFrame,
  useOperationDialog,
} from "./common.tsx";

export function DisableDialog(p: OperationDialogProps) {
  const it = p.item;
  const [form, setForm] = useState<ConfirmForm>({ confirm: "" });
  const errors = validateConfirmForm(form, it);
  const d = useOperationDialog(p, { errors, body: {} });
  const words = disableWords(it);
  return (
    <OperationFrame {...d.frame} danger>
      <p class="lead">{words.lead}</p>
      <div class="banner banner-bad" role="note">
        <strong>{words.warning}</strong>
      </div>
      <DecisionPanel {...d.panel} />
      <ConfirmName
        item={it}
        value={form.confirm}
        onInput={(confirm) => setForm({ confirm })}
        error={errors.confirm}
        attempted={d.attempted}
        what="The item is removed for good."
        autofocus
      />
    </OperationFrame>
  );
}
