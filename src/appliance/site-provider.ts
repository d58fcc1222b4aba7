// A site's compute provider as operations see it: recovery points are named by the vault's datastore
// id, and the site resolves the id to where that datastore lives before its provider reads it. So the
// vault never handles a datastore's path, and the same specs work for an in-process appliance and a
// remote one.

import type { ComputeProvider, InstanceInfo, InstanceSpec, PointDiskSource } from "../compute/provider.ts";
import { SwitchbackError } from "../domain/errors.ts";
import type { Gate } from "./gate.ts";

export class SiteProvider implements ComputeProvider {
  readonly kind: string;
  readonly #inner: ComputeProvider;
  readonly #dirOf: (datastoreId: string) => string | undefined;
  readonly #site: string;
  readonly #gate: Gate | undefined;

  /** `gate`: making disks from points reads the site's datastores (see gate.ts) */
  constructor(
    inner: ComputeProvider,
    site: string,
    dirOf: (datastoreId: string) => string | undefined,
    gate?: Gate,
  ) {
    this.kind = inner.kind;
    this.#inner = inner;
    this.#site = site;
    this.#dirOf = dirOf;
    this.#gate = gate;
  }

  #reading<T>(fn: () => Promise<T>): Promise<T> {
    return this.#gate === undefined ? fn() : this.#gate.shared(fn);
  }

  #resolve(datastoreId: string): string {
    const dir = this.#dirOf(datastoreId);
    if (dir === undefined) {
      throw new SwitchbackError(
        "DATASTORE_NOT_SERVED",
        `datastore ${datastoreId} is not a datastore that the appliance of site ${this.#site} serves; check the item's datastore and the site's appliance`,
      );
    }
    return dir;
  }

  create(spec: InstanceSpec, progress?: (fraction: number) => void): Promise<InstanceInfo> {
    const disks = spec.disks.map((d) =>
      d.from === "point" ? { ...d, datastore: this.#resolve(d.datastore) } : d,
    );
    return this.#reading(() => this.#inner.create({ ...spec, disks }, progress));
  }

  start(id: string): Promise<InstanceInfo> {
    return this.#inner.start(id);
  }

  stop(id: string, o?: { timeoutMs?: number }): Promise<{ graceful: boolean; wasRunning: boolean }> {
    return this.#inner.stop(id, o);
  }

  status(id: string): Promise<InstanceInfo | null> {
    return this.#inner.status(id);
  }

  changePoint(id: string, from: PointDiskSource): Promise<{ blocksWritten: number; bytesWritten: number }> {
    const resolved = { ...from, datastore: this.#resolve(from.datastore) };
    return this.#reading(() => this.#inner.changePoint(id, resolved));
  }

  delete(id: string, o?: { keepDisks?: boolean; timeoutMs?: number }): Promise<void> {
    return this.#inner.delete(id, o);
  }
}
