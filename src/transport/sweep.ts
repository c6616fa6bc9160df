/**
 * The deadline sweep every carrier shares: one timer checks every connection (instead of a
 * timer per socket), and what it finds overdue is acted on — an error frame and a close, or a
 * drop — at most `batchSize` per turn of the event loop, the rest on the turns after
 * (setImmediate), so thousands of connections timing out at once never hold the loop for long.
 *
 * `isDue` is a cheap, side-effect-free check; it is asked again right before `act`, so an item
 * that is no longer due by its turn (a frame arrived, it closed) is left alone, and an item
 * still waiting for its turn is not collected twice.
 */
export class Sweeper<T> {
  private readonly due = new Set<T>();
  private readonly timer: NodeJS.Timeout;
  private batchScheduled = false;
  private stopped = false;

  constructor(
    private readonly items: () => Iterable<T>,
    private readonly isDue: (item: T, now: number) => boolean,
    private readonly act: (item: T, now: number) => void,
    private readonly options: { intervalMs: number; batchSize: number },
  ) {
    this.timer = setInterval(() => this.collect(), options.intervalMs);
    this.timer.unref();
  }

  /** Items found due and not yet acted on. */
  get pending(): number {
    return this.due.size;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.due.clear();
  }

  private collect(): void {
    const now = Date.now();
    for (const item of this.items()) if (!this.due.has(item) && this.isDue(item, now)) this.due.add(item);
    if (!this.batchScheduled) this.runBatch();
  }

  private readonly runBatch = (): void => {
    this.batchScheduled = false;
    if (this.stopped) return;
    const now = Date.now();
    let acted = 0;
    for (const item of this.due) {
      if (acted >= this.options.batchSize) break;
      this.due.delete(item);
      if (!this.isDue(item, now)) continue;
      this.act(item, now);
      acted++;
    }
    if (this.due.size > 0 && !this.batchScheduled) {
      this.batchScheduled = true;
      setImmediate(this.runBatch);
    }
  };
}
