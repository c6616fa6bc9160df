/**
 * Runs work for one key at a time, in the order it was asked for; different keys run freely.
 * A session's exchanges go through here so two requests on one session never interleave
 * inside one process (across processes the store's compare-and-set decides).
 */
export class KeyedSerializer {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const tail = this.tails.get(key);
    const result = tail ? tail.then(work, work) : work();
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, settled);
    void settled.then(() => {
      if (this.tails.get(key) === settled) this.tails.delete(key);
    });
    return result;
  }

  get size(): number {
    return this.tails.size;
  }
}
