// Turns between a site's own users of its datastores: many at once may read points (making disks,
// bringing replicas forward, applying a point), one alone may change what is stored (deleting an
// item's points, retention, a seed), once the readers under way have finished. The datastore's own
// lock files refuse an exclusive holder while anyone reads; this gate makes the site's exclusive work
// wait for its own readers instead of failing, and holds new readers back while it waits (no
// starvation by readers that never stop, such as replica updates after every point). Not reentrant.
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

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.#waitingWriters++;
    try {
      while (this.#writing || this.#readers > 0) await this.#wait();
    } finally {
      this.#waitingWriters--;
    }
    this.#writing = true;
    try {
      return await fn();
    } finally {
      this.#writing = false;
      this.#notify();
    }
  }

  #wait(): Promise<void> {
    return new Promise((resolve) => this.#wake.push(resolve));
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = [];
    for (const f of w) f();
  }
}
