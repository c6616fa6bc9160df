/**
 * Runs work for one key at a time, in the order it was asked for; different keys run freely.
 * A session's exchanges go through here so two requests on one session never interleave
 * inside one process (across processes the store's compare-and-set decides).
 *
 * Uncontended — nearly always — a run costs one map entry and one reaction on the work's own
 * promise; a line of waiters is made only when a second run for the key comes while one runs.
 */
const NO_WAITERS: Array<() => void> = [];

export class KeyedSerializer {
  /** Keys with work running → the runs waiting behind it, oldest first. */
  private readonly running = new Map<string, Array<() => void>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const line = this.running.get(key);
    if (line === undefined) {
      this.running.set(key, NO_WAITERS);
      return this.start(key, work);
    }
    let waiting = line;
    if (waiting === NO_WAITERS) this.running.set(key, (waiting = []));
    return new Promise<T>((resolve, reject) => waiting.push(() => void this.start(key, work).then(resolve, reject)));
  }

  get size(): number {
    return this.running.size;
  }

  private start<T>(key: string, work: () => Promise<T>): Promise<T> {
    let result: Promise<T>;
    try {
      result = work();
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      () => this.next(key),
      () => this.next(key),
    );
    return result;
  }

  private next(key: string): void {
    const line = this.running.get(key)!;
    if (line.length === 0) this.running.delete(key);
    else line.shift()!();
  }
}
