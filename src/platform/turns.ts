// Turns taken in order within this process: one operation at a time (Mutex), or one at a time per
// key (KeyedTurns). A failed operation ends its turn like a finished one; the next still runs.

export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.#tail.then(fn);
    this.#tail = r.catch(() => {});
    return r;
  }
}

export class KeyedTurns {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `fn` once the previous operation on `key` has ended. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn);
    const settled = next.then(
      () => {},
      () => {},
    );
    this.#tails.set(key, settled);
    void settled.then(() => {
      if (this.#tails.get(key) === settled) this.#tails.delete(key);
    });
    return next;
  }
}
