// One point of a disk image into a local datastore, as `replicate-once --snapshot none` takes it, with
// the native comparing pass on or off: for tests that hold the native passes to the JavaScript ones.
import { Datastore } from "../../src/datastore/datastore.ts";
import { parseItemName } from "../../src/domain/ids.ts";
import {
  type ReplicateOptions,
  type ReplicateResult,
  replicateOnce,
} from "../../src/replication/replicate.ts";
import { LocalSink } from "../../src/replication/sink.ts";

export async function imagePoint(
  image: string,
  ds: string,
  state: string,
  nativeUnitPass: boolean,
  item = parseItemName("web1"),
  more: Partial<ReplicateOptions> = {},
): Promise<ReplicateResult> {
  const d = await Datastore.open(ds);
  try {
    return await replicateOnce({
      item,
      disks: [image],
      stateDir: state,
      sink: new LocalSink(d),
      consistency: "crash",
      snapshot: "none",
      nativeUnitPass,
      ...more,
    });
  } finally {
    await d.close();
  }
}
