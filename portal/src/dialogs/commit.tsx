// Commit: makes the failover (or failback) final. What it deletes comes from the vault's dry run;
// it cannot be undone, so the item's name is typed first.
import { useState } from "preact/hooks";
import { type ConfirmForm, isFailback, validateConfirmForm } from "../lib/operation-rules.ts";
import {
  ConfirmName,
  DecisionPanel,
  type OperationDialogProps,
  OperationFrame,
  useOperationDialog,
} from "./common.tsx";

export function CommitDialog(p: OperationDialogProps) {
  const it = p.item;
  const [form, setForm] = useState<ConfirmForm>({ confirm: "" });
  const errors = validateConfirmForm(form, it);
  const d = useOperationDialog(p, { errors, body: {} });
  const back = isFailback(it);
  return (
    <OperationFrame {...d.frame} danger>
      <p class="lead">
        Makes the {back ? "failback" : "failover"} of {it.name} final: it keeps running at{" "}
        <strong>{it.target}</strong>
        {it.failover !== null ? (
          <>
            {" "}
            from point <code>{it.failover.point}</code>
          </>
        ) : null}
        .
      </p>
      <div class="banner banner-bad" role="note">
        <strong>This cannot be undone.</strong> What commit deletes is listed below; after it the point can no
        longer be changed, and nothing protects the machine until you reprotect it.
      </div>
      <DecisionPanel {...d.panel} />
      <ConfirmName
        item={it}
        value={form.confirm}
        onInput={(confirm) => setForm({ confirm })}
        error={errors.confirm}
        attempted={d.attempted}
        what="Commit cannot be undone."
        autofocus
      />
    </OperationFrame>
  );
}
