import type { Duplex } from 'node:stream';
import type { ConnectionLimits, WireLimits } from '../config/defaults.ts';
import type { ErrorCode } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { FrameParser, type Frame } from '../wire/index.ts';
import { errorReply, type Reply } from '../wire/index.ts';
import { dispatchSafely, type FrameHandler } from './gate.ts';

export type { FrameHandler };


interface Slot {
  reply: Reply | undefined;
}

/** A frame already parsed but not yet dispatched: its slot keeps its place in the reply order. */
interface Queued {
  slot: Slot;
  frame: Frame;
}

/** The most one connection held at once: frames parsed and not yet answered, and bytes of input not yet made into frames. */
export interface Held {
  frames: number;
  bytes: number;
}

/** The shortest frame there is: `A / ROTOR/1` CRLF CRLF. */
const MIN_FRAME_BYTES = 15;

/**
 * One byte-stream connection (TCP or TLS): frames in, replies out in request order.
 *
 * - Read backpressure and fairness: one read can hold thousands of small frames, so input is
 *   parsed in slices of `maxInFlight` × the shortest frame, and only while fewer than
 *   `maxInFlight` frames are held (parsed, not yet answered): at most 2 × maxInFlight are held
 *   at any time. Input beyond that waits unparsed, the socket paused, and is parsed on a later
 *   turn of the event loop (setImmediate) once replies went out, so other connections are read
 *   and served in between. At most `maxInFlight` frames are worked on at once; the socket is
 *   also paused while the peer is not reading our replies.
 * - Write backpressure: a peer that does not drain its replies within `drainTimeoutMs` is dropped.
 * - Deadlines (checked by the listener's sweep): a header block within `headerTimeoutMs`, a
 *   whole frame within `frameTimeoutMs`, and nothing at all for `idleTimeoutMs` closes.
 * - A protocol error is answered with one error frame after the replies already owed, then
 *   the connection closes; input after it is read and discarded so the peer sees the frame.
 * - Half-close: after the peer's FIN (the listener is half-open) every frame already received
 *   is answered, in order, then the connection ends.
 */
export class StreamConnection {
  private readonly parser: FrameParser;
  private readonly slots: Slot[] = [];
  /** Input read but not parsed yet, oldest first (normally one read's worth at most: the socket is paused meanwhile). */
  private unparsed: Buffer[] = [];
  private unparsedBytes = 0;
  private readonly sliceBytes: number;
  private parseScheduled = false;
  private readonly parseLater = (): void => {
    this.parseScheduled = false;
    this.parse();
  };
  /** The peer's FIN came while input was still unparsed: end once it is. */
  private peerEnded = false;
  /** Frames waiting for a dispatch turn, oldest from `queuedHead` on. */
  private queued: Array<Queued | undefined> = [];
  private queuedHead = 0;
  private inFlight = 0;
  private frameStartedAt = 0;
  private lastActivityAt: number;
  private drainingSince = 0;
  private readPaused = false;
  private closing = false;
  private closed = false;
  private lingerTimer: NodeJS.Timeout | undefined;
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };
  private readonly onClosed: Array<() => void> = [];

  constructor(
    private readonly socket: Duplex,
    private readonly handler: FrameHandler,
    wire: WireLimits,
    private readonly limits: ConnectionLimits,
    private readonly log: Logger,
    /** Where this connection records the most it held (a listener may share one record among its connections). */
    private readonly peak: Held = { frames: 0, bytes: 0 },
    private readonly now: () => number = Date.now,
  ) {
    this.parser = new FrameParser(wire);
    this.sliceBytes = MIN_FRAME_BYTES * limits.maxInFlight;
    this.lastActivityAt = now();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => this.onDrain());
    socket.on('error', (err) => this.log.debug({ err }, 'connection error'));
    socket.on('close', () => this.onClose());
  }

  /** Called once when the connection is gone, however it ended. */
  whenClosed(callback: () => void): void {
    if (this.closed) callback();
    else this.onClosed.push(callback);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** What this connection holds now: frames parsed and not yet answered, input bytes not yet made into frames. */
  get held(): Held {
    return { frames: this.slots.length, bytes: this.unparsedBytes + this.parser.bufferedBytes };
  }

  /** Whether a deadline has passed (cheap, no side effects: the sweep asks it of every connection). */
  overdue(now: number): boolean {
    return this.deadlinePassed(now) !== undefined;
  }

  /** The listener's sweep: enforce the deadline that has passed, if one has. */
  sweep(now: number): void {
    const passed = this.deadlinePassed(now);
    if (passed === 'drain') {
      this.log.debug('peer stopped reading: dropped');
      this.socket.destroy();
    } else if (passed !== undefined) {
      this.fail(passed);
    }
  }

  private deadlinePassed(now: number): 'drain' | ErrorCode | undefined {
    if (this.closed) return undefined;
    // Checked while closing too: replies still owed wait for a peer that may never read them.
    if (this.drainingSince !== 0 && now - this.drainingSince > this.limits.drainTimeoutMs) return 'drain';
    // Unparsed input means the bytes are here and rotor is the one behind: no deadline of the peer's runs.
    if (this.closing || this.unparsedBytes > 0) return undefined;
    if (this.parser.midFrame) {
      if (this.parser.inHeaders && now - this.frameStartedAt > this.limits.headerTimeoutMs) return 'ROTOR_E_HEADER_TIMEOUT';
      if (now - this.frameStartedAt > this.limits.frameTimeoutMs) return 'ROTOR_E_FRAME_TIMEOUT';
    } else if (this.inFlight === 0 && now - this.lastActivityAt > this.limits.idleTimeoutMs) {
      return 'ROTOR_E_IDLE_TIMEOUT';
    }
    return undefined;
  }

  /** Graceful end: read no more frames, finish the ones in flight, then close. */
  shutdown(): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    this.socket.pause();
    this.flush();
  }

  /** Drop the connection now (after the shutdown grace ran out). */
  destroy(): void {
    this.socket.destroy();
  }

  /** Send one error frame (after the replies already owed) and close. */
  fail(code: ErrorCode): void {
    if (this.closing || this.closed) return;
    this.slots.push({ reply: errorReply(code) });
    this.closing = true;
    this.flush();
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return; // discarding input after an error or during shutdown
    this.lastActivityAt = this.now();
    this.unparsed.push(chunk);
    this.unparsedBytes += chunk.length;
    this.notePeak();
    this.parse();
  }

  /** Make frames of the input, a slice at a time, while fewer than maxInFlight frames are held. */
  private parse(): void {
    if (this.closing || this.closed) return;
    const now = this.now();
    while (this.unparsedBytes > 0 && this.slots.length < this.limits.maxInFlight) {
      const head = this.unparsed[0];
      let slice = head;
      if (head.length > this.sliceBytes) {
        slice = head.subarray(0, this.sliceBytes);
        this.unparsed[0] = head.subarray(this.sliceBytes);
      } else {
        this.unparsed.shift();
      }
      this.unparsedBytes -= slice.length;
      const wasMidFrame = this.parser.midFrame;
      const { frames, error } = this.parser.push(slice);
      if (frames.length > 0 || !wasMidFrame) this.frameStartedAt = now;
      for (const frame of frames) this.start(frame);
      if (error) {
        this.unparsed = [];
        this.unparsedBytes = 0;
        this.log.debug({ code: error.code }, 'protocol error');
        this.fail(error.code);
        return;
      }
    }
    this.notePeak();
    if (this.unparsedBytes === 0 && this.peerEnded) this.onEnd();
    else this.updateReading();
  }

  private notePeak(): void {
    const { frames, bytes } = this.held;
    if (frames > this.peak.frames) this.peak.frames = frames;
    if (bytes > this.peak.bytes) this.peak.bytes = bytes;
  }

  private start(frame: Frame): void {
    const slot: Slot = { reply: undefined };
    this.slots.push(slot);
    this.queued.push({ slot, frame });
    this.pump();
  }

  /** Dispatch waiting frames, in order, while fewer than maxInFlight run and the peer reads. */
  private pump(): void {
    while (this.queuedHead < this.queued.length && this.inFlight < this.limits.maxInFlight && this.drainingSince === 0 && !this.closed) {
      const { slot, frame } = this.queued[this.queuedHead]!;
      this.queued[this.queuedHead++] = undefined;
      this.dispatch(slot, frame);
    }
    if (this.queuedHead === this.queued.length) {
      this.queued = [];
      this.queuedHead = 0;
    }
  }

  private dispatch(slot: Slot, frame: Frame): void {
    this.inFlight++;
    void dispatchSafely(this.handler, frame, this.log).then((reply) => this.complete(slot, reply));
  }

  private complete(slot: Slot, reply: Reply): void {
    slot.reply = reply;
    this.inFlight--;
    this.lastActivityAt = this.now();
    if (reply.close) this.closing = true;
    this.flush();
    this.pump();
    this.updateReading();
  }

  /**
   * Write every reply that is ready, in request order. Replies finished in one turn of the event
   * loop go out in one writev: the socket stays corked until the next tick, which runs after
   * every promise job of this turn (one write per reply cost ~17 % of the server's CPU at
   * 16 connections × 32 in flight).
   */
  private flush(): void {
    if (this.closed) return;
    while (this.slots.length > 0 && this.slots[0].reply !== undefined) {
      const { bytes, close } = this.slots.shift()!.reply!;
      if (!this.corked) {
        this.corked = true;
        this.socket.cork();
        process.nextTick(this.uncork);
      }
      const writable = this.socket.write(bytes);
      if (!writable && this.drainingSince === 0) this.drainingSince = this.now();
      if (close) {
        this.slots.length = 0;
        this.queued = [];
        this.queuedHead = 0;
        this.endSoon();
        return;
      }
    }
    if (this.closing && this.slots.length === 0) this.endSoon();
  }

  private endSoon(): void {
    this.closing = true;
    if (this.lingerTimer) return;
    this.socket.end();
    // Keep reading (and discarding) for a moment so the peer gets our last frame rather than a reset.
    this.socket.resume();
    this.lingerTimer = setTimeout(() => this.socket.destroy(), Math.min(this.limits.drainTimeoutMs, 2_000));
    this.lingerTimer.unref();
  }

  private onDrain(): void {
    this.drainingSince = 0;
    this.pump();
    this.updateReading();
  }

  private updateReading(): void {
    if (this.closing || this.closed) return;
    const room = this.slots.length < this.limits.maxInFlight && this.drainingSince === 0;
    if (this.unparsedBytes > 0 && room && !this.parseScheduled) {
      // On a later turn, so the other connections' reads and replies come first.
      this.parseScheduled = true;
      setImmediate(this.parseLater);
    }
    const shouldPause = !room || this.unparsedBytes > 0;
    if (shouldPause && !this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    } else if (!shouldPause && this.readPaused) {
      this.readPaused = false;
      this.socket.resume();
    }
  }

  private onEnd(): void {
    if (this.unparsedBytes > 0) {
      // Frames of what was read before the FIN are still to come: answer them first.
      this.peerEnded = true;
      return;
    }
    const truncated = this.parser.end();
    if (truncated) this.log.debug({ code: truncated.code }, 'peer closed mid-frame');
    // The peer is done sending; answer what it asked, then close.
    this.closing = true;
    this.flush();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.queued = [];
    this.queuedHead = 0;
    this.unparsed = [];
    this.unparsedBytes = 0;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    for (const callback of this.onClosed.splice(0)) callback();
  }
}
