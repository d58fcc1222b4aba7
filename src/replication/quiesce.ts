// The stretch from the pre-snapshot hooks to the post-snapshot hooks (file systems frozen in between),
// known process-wide: a process that has to exit waits for it to end rather than leave an application
// quiesced, and nothing may write to a file system that may be frozen meanwhile.

let quiescedUntil: Promise<void> | null = null;

/** The quiesced stretch under way, or null. */
export function quiescedSection(): Promise<void> | null {
  return quiescedUntil;
}

/** Runs `fn` as the quiesced stretch. */
export async function quiesced<T>(fn: () => Promise<T>): Promise<T> {
  let done = () => {};
  quiescedUntil = new Promise<void>((r) => {
    done = r;
  });
  try {
    return await fn();
  } finally {
    quiescedUntil = null;
    done();
  }
}
