// Disable replication: protection stops for good and the item's recovery points are deleted; the
// machine itself keeps running. The item's name is typed first.
import { useState } from "preact/hooks";
import { type ConfirmForm, operationTitle, startWords, validateDisable } from "../lib/operation-rules.ts";
import {
  blockedWhy,
  ConfirmName,
  DecisionPanel,
  type OperationDialogProps,
  OperationFrame,
  usePreview,
  useStart,
} from "./common.tsx";

export function DisableDialog(p: OperationDialogProps) {
  const it = p.item;
  const [form, setForm] = useState<ConfirmForm>({ confirm: "" });
  const errors = validateDisable(form, it);
  const preview = usePreview(it, "disable", {});
  const starter = useStart(it, "disable", p.onStarted);
  return (
    <OperationFrame
      title={`${operationTitle(it, "disable")}: ${it.name}`}
      startWords={startWords(it, "disable")}
      danger
      blocked={blockedWhy(preview, {}, errors, starter.busy)}
      busy={starter.busy}
      startError={starter.error}
      onStart={() => starter.start({})}
      onClose={p.onClose}
    >
      <p class="lead">
        Stops protecting {it.name}: replication {it.direction} ends and the item is removed. The machine at{" "}
        {it.source} keeps running; you can protect it again later, from scratch.
      </p>
      <div class="banner banner-bad" role="note">
        <strong>
          Every recovery point of {it.name} at {it.target} is deleted.
        </strong>{" "}
        Nothing can be recovered from them afterwards.
      </div>
      <DecisionPanel preview={preview} />
      <ConfirmName
        item={it}
        value={form.confirm}
        onInput={(confirm) => setForm({ confirm })}
        error={errors.confirm}
        what="Its recovery points are deleted."
        autofocus
      />
    </OperationFrame>
  );
}
