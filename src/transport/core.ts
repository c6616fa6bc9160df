/**
 * The one connection engine every carrier runs on (TCP/TLS in connection.ts, WebSocket in ws.ts,
 * HTTP in http-connection.ts). What a connection promises lives here, once:
 *
 * - Reply order: every request takes its place in one line when it arrives; replies are written
 *   in that order, each once, however their work finishes.
 * - The in-flight gate: at most `connection.maxInFlight` requests are worked on at once, started
 *   in arrival order. While the line holds that many, or the peer is not taking its replies,
 *   reading stops (the carrier pauses its source). Carriers whose source hands over a whole
 *   chunk's requests at once (node:http, ws) refill a freed slot on a later turn of the event
 *   loop, so one connection starts at most maxInFlight per turn and cannot keep others waiting.
 * - Deadlines, checked by the listener's one sweep (shell.ts): a peer that does not take its
 *   replies within `drainTimeoutMs` is dropped; one that sends nothing and waits for nothing for
 *   `idleTimeoutMs` gets ROTOR_E_IDLE_TIMEOUT; a carrier adds its own (TCP's header and frame
 *   deadlines, WebSocket's pings).
 * - A protocol error: the replies owed come first, then one error frame, then the close; input
 *   after it is read and discarded for a moment (linger) so the peer gets the frame, not a reset.
 * - Half-close: after the peer's FIN every request received before it is answered, then the
 *   connection ends.
 * - Shutdown (spec.md §7 "Shutdown"): no more input; the requests already dispatched are
 *   answered in order; those received and not yet dispatched are not run; then one
 *   ROTOR_E_SHUTTING_DOWN error frame and the close. A carrier that can only answer requests
 *   (HTTP) sends that frame as the answer to the first request not run, if there is one.
 *
 * A carrier supplies the adapter: how one reply is written (`write`), how the connection ends
 * once the last one is out (`end`), how reading pauses and resumes, how it is dropped, and its
 * own deadlines. The TCP rotate path runs through here: one entry object and one promise per
 * frame, nothing else per frame.
 */
import type { Duplex } from 'node:stream';
import type { ConnectionLimits } from '../config/defaults.ts';
import type { ErrorCode } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { errorReply, type Frame, type Reply } from '../wire/index.ts';

/** Anything that answers frames: the Rotor dispatcher, or a bare echo server in the bench. */
export interface FrameHandler {
  dispatch(frame: Frame): Promise<Reply>;
}

/** Dispatch a frame; a handler that rejects (rotor never does) is answered ROTOR_E_INTERNAL. */
export function dispatchSafely(handler: FrameHandler, frame: Frame, log: Logger): Promise<Reply> {
  return handler.dispatch(frame).catch((err: unknown) => internalError(err, log));
}

function internalError(err: unknown, log: Logger): Reply {
  log.error({ err }, 'dispatch rejected');
  return errorReply('ROTOR_E_INTERNAL');
}

/** One request's place in the reply order. */
export interface Entry<C> {
  /** The frame to dispatch… */
  frame: Frame | undefined;
  /** …or the carrier's own work that yields the reply (HTTP's token API). */
  job: (() => Promise<Reply>) | undefined;
  /** Handed over: it may start once its turn comes (an HTTP request whose body is still arriving is not). */
  ready: boolean;
  reply: Reply | undefined;
  /** What the carrier needs to write the reply (HTTP: the response of its request); undefined for a frame no request asked for. */
  context: C | undefined;
}

/** A deadline that passed: drop the connection, ping it, or close it with an error frame. */
export type Due = 'drop' | 'ping' | ErrorCode;

const SHUTTING_DOWN = 'ROTOR_E_SHUTTING_DOWN';

export abstract class ConnectionCore<C> {
  /** Requests not yet answered, in arrival order; `line[next]` is the first not yet dispatched. */
  private line: Array<Entry<C>> = [];
  private next = 0;
  private inFlight = 0;
  private refillScheduled = false;
  private readonly refill = (): void => {
    this.refillScheduled = false;
    this.pump();
    this.updateReading();
  };
  private paused = false;
  private ended = false;
  private shuttingDown = false;
  private readonly onClosed: Array<() => void> = [];
  protected lastActivityAt: number;
  /** When the peer stopped taking replies (0: it takes them). */
  protected drainingSince = 0;
  /** No more input is taken (a protocol error, the peer's FIN, the shutdown): what is owed is answered, then the connection ends. */
  protected closing = false;
  protected closed = false;
  /** The last reply this connection will write (an error frame, or a reply that closes); nothing after it is. */
  protected final: Entry<C> | undefined;

  constructor(
    private readonly handler: FrameHandler,
    protected readonly limits: ConnectionLimits,
    protected readonly log: Logger,
    private readonly options: {
      /** Start a request freed up by a finished one on a later turn (for sources that hand over many requests at once). */
      refillLater: boolean;
      /** 0: the carrier keeps the idle deadline itself. */
      idleTimeoutMs: number;
    },
    protected readonly now: () => number = Date.now,
  ) {
    this.lastActivityAt = now();
  }

  // --- the adapter a carrier supplies ---

  /** Write one reply (context: see Entry). False: the peer is not keeping up; call drained() once it is. */
  protected abstract write(reply: Reply, context: C | undefined): boolean;
  /** Everything is written (`last`: the reply that closes, if one does): end the connection gracefully. */
  protected abstract end(last: Reply | undefined): void;
  protected abstract pauseInput(): void;
  protected abstract resumeInput(): void;
  /** Drop the connection now. */
  abstract destroy(): void;
  /** The carrier's own deadlines; 'busy': rotor is behind (input it has not read yet), so none of the peer's runs. */
  protected carrierDue(_now: number): Due | 'busy' | undefined {
    return undefined;
  }
  /** WebSocket: ping, or drop a peer that missed the last ping. */
  protected heartbeat(): void {}
  /** Whether to stop reading, given whether the line has room; a carrier holding input of its own may say more. */
  protected holdsInput(room: boolean): boolean {
    return !room;
  }
  /** Forget input read but not made into requests yet (nothing more is taken). */
  protected discardInput(): void {}

  // --- what the listener and the sweep use ---

  /** Called once when the connection is gone, however it ended. */
  whenClosed(callback: () => void): void {
    if (this.closed) callback();
    else this.onClosed.push(callback);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether a deadline has passed (cheap, no side effects: the sweep asks it of every connection). */
  overdue(now: number): boolean {
    return this.due(now) !== undefined;
  }

  /** The sweep: enforce the deadline that has passed, if one has. */
  sweep(now: number): void {
    const due = this.due(now);
    if (due === 'drop') {
      this.log.debug('peer stopped reading: dropped');
      this.destroy();
    } else if (due === 'ping') {
      this.heartbeat();
    } else if (due !== undefined) {
      this.fail(due);
    }
  }

  /** The server shuts down: read no more, answer what was dispatched, run nothing else, then ROTOR_E_SHUTTING_DOWN and close. */
  shutdown(): void {
    if (this.closed || this.final !== undefined) return;
    this.shuttingDown = true;
    this.closing = true;
    this.discardInput();
    // The entries from `next` on were received and not dispatched: they are not run. The
    // first of them (if any) is where an HTTP carrier gives the answer.
    const first = this.line.length > this.next ? this.line[this.next] : undefined;
    this.line.length = this.next;
    this.pushFinal(errorReply(SHUTTING_DOWN), first?.context);
  }

  /** A protocol error (or a deadline): the replies owed, then one error frame, then close. */
  fail(code: ErrorCode): void {
    if (this.closed || this.final !== undefined) return;
    this.closing = true;
    this.discardInput();
    // A request still arriving (an HTTP body) cannot complete now: its place goes.
    while (this.line.length > this.next && !this.line[this.line.length - 1].ready) this.line.pop();
    this.pushFinal(errorReply(code), undefined);
  }

  // --- what a carrier calls ---

  /** Requests held: received and not yet answered. */
  protected get owed(): number {
    return this.line.length;
  }

  /** A request that can start at once (a frame of TCP or WebSocket). */
  protected receive(frame: Frame, context: C | undefined): void {
    this.line.push({ frame, job: undefined, ready: true, reply: undefined, context });
    this.pump();
  }

  /** Take a place in line for a request that is not complete yet; `ready`, `settle` or `abandon` it later. */
  protected enter(context: C): Entry<C> {
    const entry: Entry<C> = { frame: undefined, job: undefined, ready: false, reply: undefined, context };
    this.line.push(entry);
    return entry;
  }

  /** The request is complete: dispatch `work` (a frame, or a job) once its turn comes. */
  protected ready(entry: Entry<C>, work: Frame | (() => Promise<Reply>)): void {
    if (typeof work === 'function') entry.job = work;
    else entry.frame = work;
    entry.ready = true;
    this.pump();
    this.updateReading();
  }

  /** The reply is known without any work (a refusal): it goes out in its turn. */
  protected settle(entry: Entry<C>, reply: Reply): void {
    entry.ready = true;
    this.answered(entry, reply);
    this.pump();
    this.updateReading();
  }

  /** The request will never complete (its peer went away mid-body): it leaves the line. */
  protected abandon(entry: Entry<C>): void {
    const at = this.line.indexOf(entry);
    if (at < this.next) return;
    this.line.splice(at, 1);
    this.flush();
    this.pump();
  }

  /** Shutting down, no request has the answer yet and none has been sent: `context` gets it. */
  protected takesFinal(context: C): boolean {
    const final = this.final;
    if (!this.shuttingDown || this.ended || final === undefined || final.context !== undefined) return false;
    final.context = context;
    return true;
  }

  protected noteActivity(): void {
    this.lastActivityAt = this.now();
  }

  /** The peer finished sending (FIN): answer what it asked, then end. */
  protected peerEnded(): void {
    this.closing = true;
    this.updateReading();
    this.flush();
  }

  /** The peer takes replies again. */
  protected drained(): void {
    this.drainingSince = 0;
    this.pump();
    this.updateReading();
  }

  /** The carrier saw its connection close. */
  protected closedNow(): void {
    if (this.closed) return;
    this.closed = true;
    this.line = [];
    this.next = 0;
    for (const callback of this.onClosed.splice(0)) callback();
  }

  /** Pause or resume reading to match the line and the peer; while closing, read and discard. */
  protected updateReading(): void {
    if (this.closed || this.ended) return;
    const hold = !this.closing && this.holdsInput(this.line.length < this.limits.maxInFlight && this.drainingSince === 0);
    if (hold === this.paused) return;
    this.paused = hold;
    if (hold) this.pauseInput();
    else this.resumeInput();
  }

  // --- the engine ---

  private pushFinal(reply: Reply, context: C | undefined): void {
    const final: Entry<C> = { frame: undefined, job: undefined, ready: true, reply, context };
    this.line.push(final);
    this.final = final;
    this.updateReading();
    this.flush();
  }

  /** Dispatch waiting requests, in order, while fewer than maxInFlight run and the peer reads. */
  private pump(): void {
    const line = this.line;
    while (this.next < line.length && this.inFlight < this.limits.maxInFlight && this.drainingSince === 0 && !this.closed) {
      const entry = line[this.next];
      if (entry.reply === undefined) {
        if (!entry.ready) break;
        this.dispatch(entry);
      }
      this.next++;
    }
  }

  private dispatch(entry: Entry<C>): void {
    this.inFlight++;
    const work = entry.job === undefined ? dispatchSafely(this.handler, entry.frame!, this.log) : entry.job().catch((err: unknown) => internalError(err, this.log));
    void work.then((reply) => this.complete(entry, reply));
  }

  private complete(entry: Entry<C>, reply: Reply): void {
    this.inFlight--;
    this.lastActivityAt = this.now();
    this.answered(entry, reply);
    if (this.options.refillLater && this.next < this.line.length) this.scheduleRefill();
    else this.pump();
    this.updateReading();
  }

  private scheduleRefill(): void {
    if (this.refillScheduled) return;
    this.refillScheduled = true;
    setImmediate(this.refill);
  }

  private answered(entry: Entry<C>, reply: Reply): void {
    entry.reply = reply;
    if (reply.close && this.final === undefined) {
      // A reply that closes is the last: what came after it is neither run nor answered.
      const at = this.line.indexOf(entry);
      if (at !== -1) {
        this.line.length = at + 1;
        if (this.next > at + 1) this.next = at + 1;
        this.final = entry;
        this.closing = true;
        this.discardInput();
      }
    }
    this.flush();
  }

  /** Write every reply that is ready, in request order; end after the last. */
  private flush(): void {
    if (this.closed || this.ended) return;
    const line = this.line;
    while (line.length > 0 && line[0].reply !== undefined) {
      const entry = line.shift()!;
      if (this.next > 0) this.next--;
      const reply = entry.reply!;
      if (!this.write(reply, entry.context) && this.drainingSince === 0) this.drainingSince = this.now();
      if (reply.close) {
        this.line = [];
        this.next = 0;
        this.finish(reply);
        return;
      }
    }
    if (this.closing && line.length === 0) this.finish(undefined);
  }

  private finish(last: Reply | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.closing = true;
    this.end(last);
  }

  private due(now: number): Due | undefined {
    if (this.closed) return undefined;
    // Checked while closing too: replies still owed wait for a peer that may never read them.
    if (this.drainingSince !== 0 && now - this.drainingSince > this.limits.drainTimeoutMs) return 'drop';
    if (this.closing) return undefined;
    const own = this.carrierDue(now);
    if (own !== undefined) return own === 'busy' ? undefined : own;
    const idle = this.options.idleTimeoutMs;
    if (idle > 0 && this.line.length === 0 && now - this.lastActivityAt > idle) return 'ROTOR_E_IDLE_TIMEOUT';
    return undefined;
  }
}

const lingering = new WeakSet<Duplex>();

/**
 * End a socket gracefully (after `bytes`, if given) and keep reading — and discarding — for up
 * to `ms`, so unread input does not turn the close into a reset that overtakes the last answer;
 * then drop it. Idempotent: a socket lingers once.
 */
export function linger(socket: Duplex, ms: number, bytes?: Buffer | string): void {
  if (lingering.has(socket)) return;
  lingering.add(socket);
  socket.on('error', () => {});
  if (bytes === undefined) socket.end();
  else socket.end(bytes);
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), ms);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
