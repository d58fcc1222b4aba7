// A local datastore folder as the vault and a remote appliance take one: initialised when it is new or
// empty, adopted when it holds a datastore already, refused when it holds anything else.
import { mkdir, readdir } from "node:fs/promises";
import { SwitchbackError } from "../../domain/errors.ts";
import { Datastore } from "../datastore.ts";

/** Initialises `dir` as a datastore, or adopts the datastore already there; refuses other content. */
export async function initLocalDatastoreFolder(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  let ds: Datastore;
  try {
    ds = await Datastore.open(dir);
  } catch (err) {
    if (!(err instanceof SwitchbackError)) throw err;
    // a ".tmp-" file is a write under way or cut short (the backend renames into place): not content
    const entries = (await readdir(dir)).filter((e) => !e.includes(".tmp-"));
    if (entries.length > 0) {
      throw new SwitchbackError(
        "DATASTORE_PATH_NOT_EMPTY",
        `${dir} holds files but no datastore (${err.message}); choose an empty or new folder`,
      );
    }
    try {
      ds = await Datastore.init(dir);
    } catch (e) {
      // another process initialised it meanwhile (two vaults starting on one data folder)
      if (!(e instanceof SwitchbackError && e.code === "DATASTORE_EXISTS")) throw e;
      ds = await Datastore.open(dir);
    }
  }
  await ds.close();
}
