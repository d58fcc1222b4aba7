// Operation dialogs. Each operation of an item opens one: it previews the vault's decision (a dry run
// when it opens and after each change), shows a refusal with its code before anything starts, keeps
// Start off while the form is invalid, refused or busy, and hands the started job to onStarted.
import "./dialogs.css";
import { ChangePointDialog } from "./change-point.tsx";
import { CleanupDialog } from "./cleanup.tsx";
import { CommitDialog } from "./commit.tsx";
import type { OperationDialogProps } from "./common.tsx";
import { DisableDialog } from "./disable.tsx";
import { FailoverDialog } from "./failover.tsx";
import { ReprotectDialog } from "./reprotect.tsx";
import { TestFailoverDialog } from "./test-failover.tsx";

export type { OperationDialogProps } from "./common.tsx";

export function OperationDialog(p: OperationDialogProps) {
  switch (p.op) {
    case "test-failover":
      return <TestFailoverDialog {...p} />;
    case "test-failover-cleanup":
      return <CleanupDialog {...p} />;
    case "failover":
      return <FailoverDialog {...p} />;
    case "change-point":
      return <ChangePointDialog {...p} />;
    case "commit":
      return <CommitDialog {...p} />;
    case "reprotect":
      return <ReprotectDialog {...p} />;
    case "disable":
      return <DisableDialog {...p} />;
  }
}
