// Operation dialogs: placeholder until the dialogs land. Each operation of an item opens one; it
// previews the decision (dry run), shows refusals before anything starts, and starts the job.
import type { ItemView, Operation } from "../api/client.ts";
import { Dialog } from "../ui/kit.tsx";

export interface OperationDialogProps {
  item: ItemView;
  op: Operation;
  /** a point picked on the timeline, for the operations that take one */
  point?: string;
  onClose: () => void;
  onStarted: (job: { id: string }) => void;
}

export function OperationDialog(p: OperationDialogProps) {
  return (
    <Dialog title={p.op} onClose={p.onClose}>
      <p>Not yet.</p>
    </Dialog>
  );
}
