// Turns between a site's own users of its datastores: many at once may read points (making disks,
// bringing replicas forward, applying a point), one alone may change what is stored (deleting an
// item's points, retention, a seed), once the readers under way have finished. The datastore's own
// lock files refuse an exclusive holder while anyone reads; this gate makes the site's exclusive work
// wait for its own readers instead of failing, and holds new readers back while it waits (no
// starvation by readers that never stop, such as replica updates after every point). Not reentrant.
// A process server keeps one of its own: commits are its readers, retention and seeds its writers.
import { SwitchbackError } from "../domain/errors.ts";

export class Gate {
  #readers = 0;
  #writing = false;
  #waitingWriters = 0;
  #wake: (() => void)[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#writing || this.#waitingWriters > 0) await this.#wait();
    this.#readers++;
    try {
      return await fn();
    } finally {
      this.#readers--;
      this.#notify();
    }
  }

  /** `waitMs`: give up (DATASTORE_LOCKED) when the readers under way have not finished by then. */
  async exclusive<T>(fn: () => Promise<T>, o: { waitMs?: number } = {}): Promise<T> {
    const deadline = o.waitMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + o.waitMs;
    this.#waitingWriters++;
    try {
      while (this.#writing || this.#readers > 0) {
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new SwitchbackError(
            "DATASTORE_LOCKED",
            `the site's datastores are in use by ${this.#readers} reader(s) (making disks, bringing replicas forward) for longer than ${o.waitMs} ms; try again`,
          );
        }
        await this.#wait(left);
      }
    } finally {
      this.#waitingWriters--;
      this.#notify(); // readers held back for this writer may go on if it gave up
    }
    this.#writing = true;
    try {
      return await fn();
    } finally {
      this.#writing = false;
      this.#notify();
    }
  }

  #wait(ms = Number.POSITIVE_INFINITY): Promise<void> {
    return new Promise((resolve) => {
      this.#wake.push(resolve);
      if (Number.isFinite(ms)) setTimeout(resolve, ms).unref();
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = [];
    for (const f of w) f();
  }
}
