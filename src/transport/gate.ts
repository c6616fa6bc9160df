import type { Logger } from '../log/index.ts';
import type { Frame } from '../wire/index.ts';
import { errorReply, type Reply } from '../wire/index.ts';

/** Anything that answers frames: the Rotor dispatcher, or a bare echo server in the bench. */
export interface FrameHandler {
  dispatch(frame: Frame): Promise<Reply>;
}

/** Dispatch a frame; a handler that rejects (rotor never does) is answered ROTOR_E_INTERNAL. */
export function dispatchSafely(handler: FrameHandler, frame: Frame, log: Logger): Promise<Reply> {
  return handler.dispatch(frame).catch((err: unknown) => {
    log.error({ err }, 'dispatch rejected');
    return errorReply('ROTOR_E_INTERNAL');
  });
}

/**
 * The in-flight cap of one connection, shared by the HTTP and WebSocket carriers: work starts
 * in arrival order, at most `max` at once. A carrier's parser may hand over more requests than
 * that in one go (node:http and `ws` emit every request a chunk holds, paused or not); those
 * wait here, bounded by the chunk, while the carrier pauses its socket. A slot that frees while
 * work waits is filled on a later turn of the event loop (setImmediate), not at once: otherwise
 * one chunk's thousands of requests would all run in one chain of microtasks while every other
 * connection waits. So one connection starts at most `max` per turn.
 */
export class InFlightGate {
  /** Waiting work, oldest from `head` on (an index, not shift(): a chunk can hold thousands). */
  private line: Array<{ run: (() => Promise<void>) | undefined }> = [];
  private head = 0;
  private running = 0;
  private refillScheduled = false;
  private readonly refill = (): void => {
    this.refillScheduled = false;
    this.pump();
  };

  /** `changed` runs after every start and finish, for the carrier to pause or resume reading. */
  constructor(
    private readonly max: number,
    private readonly changed: () => void,
  ) {}

  get inFlight(): number {
    return this.running;
  }

  /** At the cap, or work is waiting: more input would only wait. */
  get full(): boolean {
    return this.running >= this.max || this.head < this.line.length;
  }

  /** Take a place in line now; the work starts, in line order, once it is handed over and a slot is free. */
  enter(): (run: () => Promise<void>) => void {
    const place: { run: (() => Promise<void>) | undefined } = { run: undefined };
    this.line.push(place);
    return (run) => {
      place.run = run;
      this.pump();
    };
  }

  /** Drop everything still waiting (the connection failed or is closing). */
  clear(): void {
    this.line = [];
    this.head = 0;
  }

  private scheduleRefill(): void {
    if (this.refillScheduled) return;
    this.refillScheduled = true;
    setImmediate(this.refill);
  }

  private pump(): void {
    while (this.head < this.line.length && this.line[this.head].run !== undefined && this.running < this.max) {
      const run = this.line[this.head++].run!;
      if (this.head === this.line.length) this.clear();
      this.running++;
      let work: Promise<void>;
      try {
        work = run();
      } catch (err) {
        work = Promise.reject(err);
      }
      work
        .catch(() => undefined)
        .finally(() => {
          this.running--;
          if (this.head < this.line.length) this.scheduleRefill();
          else this.changed();
        });
    }
    this.changed();
  }
}

/** Pauses and resumes a source only when the wanted state changes (a carrier's read switch). */
export class ReadSwitch {
  private paused = false;

  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
  ) {}

  get isPaused(): boolean {
    return this.paused;
  }

  set(shouldPause: boolean): void {
    if (shouldPause === this.paused) return;
    this.paused = shouldPause;
    if (shouldPause) this.pause();
    else this.resume();
  }
}
