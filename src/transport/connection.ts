import type { Duplex } from 'node:stream';
import type { ConnectionLimits, WireLimits } from '../config/defaults.ts';
import type { Logger } from '../log/index.ts';
import { FrameParser, type Reply } from '../wire/index.ts';
import { ConnectionCore, linger, type Due, type FrameHandler } from './core.ts';

export type { FrameHandler };

/** The most one connection held at once: frames parsed and not yet answered, and bytes of input not yet made into frames. */
export interface Held {
  frames: number;
  bytes: number;
}

/** The shortest frame there is: `A / ROTOR/1` CRLF CRLF. */
const MIN_FRAME_BYTES = 15;

/**
 * One byte-stream connection (TCP or TLS): the carrier side of the connection core (core.ts,
 * which keeps the reply order, the in-flight gate, the drain and idle deadlines, protocol
 * errors, half-close and shutdown). What is particular to a byte stream is here:
 *
 * - Parsing in slices, for fairness: one read can hold thousands of small frames, so input is
 *   parsed in slices of `maxInFlight` × the shortest frame, and only while fewer than
 *   `maxInFlight` frames are held (parsed, not yet answered): at most 2 × maxInFlight are held
 *   at any time. Input beyond that waits unparsed, the socket paused, and is parsed on a later
 *   turn of the event loop (setImmediate) once replies went out, so other connections are read
 *   and served in between.
 * - Writes batched: replies finished in one turn go out in one writev (cork until nextTick).
 * - The header and frame deadlines: a header block within `headerTimeoutMs`, a whole frame
 *   within `frameTimeoutMs` of its first byte.
 * - Half-close: a FIN that arrives while input is still unparsed takes effect once it is parsed.
 */
export class StreamConnection extends ConnectionCore<undefined> {
  private readonly parser: FrameParser;
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
  private finPending = false;
  private frameStartedAt = 0;
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly socket: Duplex,
    handler: FrameHandler,
    wire: WireLimits,
    limits: ConnectionLimits,
    log: Logger,
    /** Where this connection records the most it held (a listener may share one record among its connections). */
    private readonly peak: Held = { frames: 0, bytes: 0 },
    now: () => number = Date.now,
  ) {
    super(handler, limits, log, { refillLater: false, idleTimeoutMs: limits.idleTimeoutMs }, now);
    this.parser = new FrameParser(wire);
    this.sliceBytes = MIN_FRAME_BYTES * limits.maxInFlight;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => this.drained());
    socket.on('error', (err) => this.log.debug({ err }, 'connection error'));
    socket.on('close', () => this.closedNow());
  }

  /** What this connection holds now: frames parsed and not yet answered, input bytes not yet made into frames. */
  get held(): Held {
    return { frames: this.owed, bytes: this.unparsedBytes + this.parser.bufferedBytes };
  }

  destroy(): void {
    this.socket.destroy();
  }

  protected override carrierDue(now: number): Due | 'busy' | undefined {
    // Unparsed input means the bytes are here and rotor is the one behind: no deadline of the peer's runs.
    if (this.unparsedBytes > 0) return 'busy';
    if (!this.parser.midFrame) return undefined;
    if (this.parser.inHeaders && now - this.frameStartedAt > this.limits.headerTimeoutMs) return 'ROTOR_E_HEADER_TIMEOUT';
    if (now - this.frameStartedAt > this.limits.frameTimeoutMs) return 'ROTOR_E_FRAME_TIMEOUT';
    return 'busy';
  }

  /**
   * Replies finished in one turn of the event loop go out in one writev: the socket stays
   * corked until the next tick, which runs after every promise job of this turn (one write per
   * reply cost ~17 % of the server's CPU at 16 connections × 32 in flight).
   */
  protected write(reply: Reply): boolean {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    return this.socket.write(reply.bytes);
  }

  protected end(): void {
    linger(this.socket, Math.min(this.limits.drainTimeoutMs, 2_000));
  }

  protected pauseInput(): void {
    this.socket.pause();
  }

  protected resumeInput(): void {
    this.socket.resume();
  }

  protected override holdsInput(room: boolean): boolean {
    if (this.unparsedBytes > 0 && room && !this.parseScheduled) {
      // On a later turn, so the other connections' reads and replies come first.
      this.parseScheduled = true;
      setImmediate(this.parseLater);
    }
    return !room || this.unparsedBytes > 0;
  }

  protected override discardInput(): void {
    this.unparsed = [];
    this.unparsedBytes = 0;
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return; // discarding input after an error or during shutdown
    this.noteActivity();
    this.unparsed.push(chunk);
    this.unparsedBytes += chunk.length;
    this.notePeak();
    this.parse();
  }

  /** Make frames of the input, a slice at a time, while fewer than maxInFlight frames are held. */
  private parse(): void {
    if (this.closing || this.closed) return;
    const now = this.now();
    while (this.unparsedBytes > 0 && this.owed < this.limits.maxInFlight) {
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
      for (const frame of frames) this.receive(frame, undefined);
      if (error) {
        this.log.debug({ code: error.code }, 'protocol error');
        this.fail(error.code);
        return;
      }
    }
    this.notePeak();
    if (this.unparsedBytes === 0 && this.finPending) this.onEnd();
    else this.updateReading();
  }

  private notePeak(): void {
    const frames = this.owed;
    const bytes = this.unparsedBytes + this.parser.bufferedBytes;
    if (frames > this.peak.frames) this.peak.frames = frames;
    if (bytes > this.peak.bytes) this.peak.bytes = bytes;
  }

  private onEnd(): void {
    if (this.unparsedBytes > 0) {
      // Frames of what was read before the FIN are still to come: answer them first.
      this.finPending = true;
      return;
    }
    const truncated = this.parser.end();
    if (truncated) this.log.debug({ code: truncated.code }, 'peer closed mid-frame');
    this.peerEnded();
  }
}
