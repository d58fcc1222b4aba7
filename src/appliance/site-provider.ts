// A site's compute provider as operations see it: recovery points are named by the vault's datastore
// id, and the site resolves the id to where that datastore lives before its provider reads it. So the
// vault never handles a datastore's path, and the same specs work for an in-process appliance and a
// remote one.

import type { ComputeProvider, InstanceInfo, InstanceSpec, PointDiskSource } from "../compute/provider.ts";
import { SwitchbackError } from "../domain/errors.ts";

export class SiteProvider implements ComputeProvider {
  readonly kind: string;
  readonly #inner: ComputeProvider;
  readonly #dirOf: (datastoreId: string) => string | undefined;
  readonly #site: string;

  constructor(inner: ComputeProvider, site: string, dirOf: (datastoreId: string) => string | undefined) {
    this.kind = inner.kind;
    this.#inner = inner;
    this.#site = site;
    this.#dirOf = dirOf;
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
    return this.#inner.create({ ...spec, disks }, progress);
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
    return this.#inner.changePoint(id, { ...from, datastore: this.#resolve(from.datastore) });
  }

  delete(id: string, o?: { keepDisks?: boolean; timeoutMs?: number }): Promise<void> {
    return this.#inner.delete(id, o);
  }
}
