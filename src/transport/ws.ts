/**
 * rotor over WebSocket: one rotor frame per binary message, the same bytes as on TCP, replies
 * in request order, one reply per message. It rides on the HTTP listener (an upgrade at the
 * WebSocket path, by default /rotor/ws), so HTTP, the token API and WebSocket share one port
 * and, with TLS, one certificate.
 *
 * - A message that is not exactly one frame — text, empty, two frames, trailing bytes, a frame
 *   cut short — is a protocol error: the replies owed are sent, then one error frame, then the
 *   socket closes (see closeCodeFor). A message larger than maxPayload (the largest header block
 *   plus the largest body) is refused by `ws` itself as it arrives: close 1009, no error frame.
 * - Backpressure: at most connection.maxInFlight frames are worked on at once, and nothing is
 *   read while more than carriers.wsMaxBufferedBytes of replies wait to be sent; a peer that
 *   does not take its replies within connection.drainTimeoutMs is dropped.
 * - Keepalive: a ping every carriers.wsPingIntervalMs; a peer that did not answer the previous
 *   one is dropped. No frame and nothing in flight for connection.idleTimeoutMs closes the
 *   connection with ROTOR_E_IDLE_TIMEOUT, as on TCP.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { ERRORS, type ErrorCode } from '../errors.ts';
import type { RotorConfig } from '../config/defaults.ts';
import type { Logger } from '../log/index.ts';
import { errorReply, parseOneFrame, type Frame, type Reply } from '../wire/index.ts';
import type { FrameHandler } from './connection.ts';
import { fromOrigin, type OriginAwareHandler } from './admission.ts';
import { dispatchSafely, InFlightGate, ReadSwitch } from './gate.ts';
import { Sweeper } from './sweep.ts';

export const DEFAULT_WS_PATH = '/rotor/ws';

/** The WebSocket close code that goes with a fatal rotor error (the close reason is the code). */
export function closeCodeFor(code: ErrorCode): number {
  if (code === 'ROTOR_E_SHUTTING_DOWN') return 1001;
  const status = ERRORS[code].status;
  if (status === 413 || status === 431) return 1009;
  if (status === 503) return 1013;
  if (status === 408) return 1000;
  return 1002;
}

export class WebSocketCarrier {
  private readonly server: WebSocketServer;
  private readonly live = new Set<WsConnection>();
  private readonly pinger: Sweeper<WsConnection>;
  private readonly sweeper: Sweeper<WsConnection>;

  constructor(
    private readonly handler: OriginAwareHandler,
    private readonly config: RotorConfig,
    private readonly log: Logger,
  ) {
    this.server = new WebSocketServer({
      noServer: true,
      maxPayload: config.wire.maxHeaderBytes + config.wire.maxBodyBytes,
      perMessageDeflate: false,
      clientTracking: false,
      // Text messages are refused anyway; binary ones are never decoded as UTF-8.
      skipUTF8Validation: true,
    });
    // Pings and deadlines both go in batches across turns: thousands of sockets at once would hold the loop.
    const batchSize = config.connection.sweepBatchSize;
    this.pinger = new Sweeper(
      () => this.live,
      (connection) => !connection.isClosed,
      (connection) => connection.heartbeat(),
      { intervalMs: config.carriers.wsPingIntervalMs, batchSize },
    );
    this.sweeper = new Sweeper(
      () => this.live,
      (connection, now) => connection.overdue(now),
      (connection, now) => connection.sweep(now),
      { intervalMs: config.connection.sweepIntervalMs, batchSize },
    );
  }

  get connections(): number {
    return this.live.size;
  }

  /** Finish the handshake of an upgrade request the HTTP listener routed here. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.server.handleUpgrade(request, socket, head, (ws) => {
      const origin = { carrier: 'ws', peer: request.socket.remoteAddress } as const;
      const connection = new WsConnection(ws, fromOrigin(this.handler, origin), this.config, this.log);
      this.live.add(connection);
      connection.whenClosed(() => this.live.delete(connection));
    });
  }

  /** Read no more frames, answer the ones in flight, then close each socket (1001). */
  shutdown(): void {
    for (const connection of this.live) connection.shutdown();
  }

  whenAllClosed(): Promise<void> {
    return Promise.all([...this.live].map((c) => new Promise<void>((resolve) => c.whenClosed(resolve)))).then(() => undefined);
  }

  destroy(): void {
    this.pinger.stop();
    this.sweeper.stop();
    for (const connection of this.live) connection.destroy();
    this.server.close();
  }
}

interface Slot {
  reply: Reply | undefined;
}

/** One WebSocket: frames in, replies out in request order. */
class WsConnection {
  private readonly slots: Slot[] = [];
  private readonly gate: InFlightGate;
  private lastActivityAt = Date.now();
  private drainingSince = 0;
  private readonly reading: ReadSwitch;
  private closing = false;
  private closed = false;
  private answeredPing = true;
  private readonly onClosed: Array<() => void> = [];

  constructor(
    private readonly ws: WebSocket,
    private readonly handler: FrameHandler,
    private readonly config: RotorConfig,
    private readonly log: Logger,
  ) {
    this.gate = new InFlightGate(config.connection.maxInFlight, () => this.updateReading());
    this.reading = new ReadSwitch(() => ws.pause(), () => ws.resume());
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('pong', () => (this.answeredPing = true));
    ws.on('error', (err) => this.log.debug({ err }, 'websocket error'));
    ws.on('close', () => this.onClose());
  }

  whenClosed(callback: () => void): void {
    if (this.closed) callback();
    else this.onClosed.push(callback);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  heartbeat(): void {
    if (this.closed) return;
    if (!this.answeredPing) {
      this.log.debug('websocket peer missed a ping: dropped');
      this.ws.terminate();
      return;
    }
    this.answeredPing = false;
    this.ws.ping();
  }

  /** Whether a deadline has passed (cheap, no side effects: the sweep asks it of every connection). */
  overdue(now: number): boolean {
    return this.deadlinePassed(now) !== undefined;
  }

  /** Enforce the deadline that has passed, if one has. */
  sweep(now: number): void {
    const passed = this.deadlinePassed(now);
    if (passed === 'drain') {
      this.log.debug('websocket peer stopped reading: dropped');
      this.ws.terminate();
    } else if (passed === 'idle') {
      this.fail('ROTOR_E_IDLE_TIMEOUT');
    }
  }

  private deadlinePassed(now: number): 'drain' | 'idle' | undefined {
    if (this.closed) return undefined;
    if (this.drainingSince !== 0 && now - this.drainingSince > this.config.connection.drainTimeoutMs) return 'drain';
    if (!this.closing && this.slots.length === 0 && this.gate.inFlight === 0 && now - this.lastActivityAt > this.config.connection.idleTimeoutMs) return 'idle';
    return undefined;
  }

  /** Take no more frames, answer those in flight, then close (1001). Frames still waiting for a slot are dropped, as on TCP. */
  shutdown(): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    this.gate.clear();
    // Keep reading: new frames are dropped (closing), but the peer's close frame must get through.
    this.reading.set(false);
    this.flush();
  }

  destroy(): void {
    this.ws.terminate();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closing) return;
    this.lastActivityAt = Date.now();
    const parsed: { frame: Frame } | { code: ErrorCode } = isBinary ? parseOneFrame(data, this.config.wire) : { code: 'ROTOR_E_BAD_START_LINE' };
    const start = this.gate.enter();
    if ('code' in parsed) {
      this.log.debug({ code: parsed.code }, 'protocol error');
      // In line like a frame, so the replies owed for the frames before it go out first.
      start(async () => this.fail(parsed.code));
      return;
    }
    start(() => {
      const slot: Slot = { reply: undefined };
      this.slots.push(slot);
      return dispatchSafely(this.handler, parsed.frame, this.log).then((reply) => this.complete(slot, reply));
    });
  }

  private complete(slot: Slot, reply: Reply): void {
    slot.reply = reply;
    this.lastActivityAt = Date.now();
    this.flush();
  }

  private fail(code: ErrorCode): void {
    if (this.closing || this.closed) return;
    this.gate.clear();
    this.slots.push({ reply: errorReply(code) });
    this.closing = true;
    this.reading.set(false);
    this.flush();
  }

  /** Send every reply that is ready, in request order; close after a fatal one. */
  private flush(): void {
    if (this.closed) return;
    while (this.slots.length > 0 && this.slots[0].reply !== undefined) {
      const reply = this.slots.shift()!.reply!;
      this.ws.send(reply.bytes, { binary: true }, () => this.onSent());
      if (this.ws.bufferedAmount > this.config.carriers.wsMaxBufferedBytes && this.drainingSince === 0) {
        this.drainingSince = Date.now();
        this.updateReading();
      }
      if (reply.close) {
        this.slots.length = 0;
        const code = reply.error ?? 'ROTOR_E_INTERNAL';
        this.closing = true;
        this.gate.clear();
        this.reading.set(false);
        this.ws.close(closeCodeFor(code), code);
        return;
      }
    }
    if (this.closing && this.slots.length === 0) this.ws.close(closeCodeFor('ROTOR_E_SHUTTING_DOWN'), 'ROTOR_E_SHUTTING_DOWN');
  }

  private onSent(): void {
    if (this.drainingSince !== 0 && this.ws.bufferedAmount <= this.config.carriers.wsMaxBufferedBytes) {
      this.drainingSince = 0;
      this.updateReading();
    }
  }

  private updateReading(): void {
    if (this.closing || this.closed) return;
    this.reading.set(this.gate.full || this.drainingSince !== 0);
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.gate.clear();
    for (const callback of this.onClosed.splice(0)) callback();
  }
}
