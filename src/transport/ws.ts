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
 * - Shutdown (spec.md §7): the frames being worked on are answered, the rest are not run, then
 *   one binary message with ROTOR_E_SHUTTING_DOWN and close 1001 with that code as the reason.
 * Order, gate, deadlines and close are the connection core's (core.ts), as on every carrier.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { ERRORS, type ErrorCode } from '../errors.ts';
import type { RotorConfig } from '../config/defaults.ts';
import type { Logger } from '../log/index.ts';
import { parseOneFrame, type Frame, type Reply } from '../wire/index.ts';
import { fromOrigin, type OriginAwareHandler } from './admission.ts';
import { ConnectionCore, type Due, type FrameHandler } from './core.ts';

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

/** The WebSocket side of the HTTP listener: finishes upgrades and hands each socket's connection to the listener. */
export class WebSocketCarrier {
  private readonly server: WebSocketServer;

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
  }

  /** Finish the handshake of an upgrade request the HTTP listener routed here; `up` gets the connection. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer, up: (connection: WsConnection) => void): void {
    this.server.handleUpgrade(request, socket, head, (ws) => {
      const origin = { carrier: 'ws', peer: request.socket.remoteAddress } as const;
      up(new WsConnection(ws, fromOrigin(this.handler, origin), this.config, this.log));
    });
  }
}

/**
 * One WebSocket on the connection core (core.ts): a binary message is a frame, a reply is a
 * binary message; the core keeps the order, the in-flight gate, the deadlines and the close.
 * Reading stops while more than carriers.wsMaxBufferedBytes of replies wait to be sent. The
 * pings are deadlines the listener's sweep enforces: one every carriers.wsPingIntervalMs (at
 * the sweep's pace), and a peer that did not answer the previous one is dropped.
 */
export class WsConnection extends ConnectionCore<undefined> {
  private answeredPing = true;
  private lastPingAt: number;
  private readonly maxBuffered: number;
  private readonly onSent = (): void => {
    if (this.drainingSince !== 0 && this.ws.bufferedAmount <= this.maxBuffered) this.drained();
  };

  constructor(
    private readonly ws: WebSocket,
    handler: FrameHandler,
    private readonly config: RotorConfig,
    log: Logger,
  ) {
    super(handler, config.connection, log, { refillLater: true, idleTimeoutMs: config.connection.idleTimeoutMs });
    this.maxBuffered = config.carriers.wsMaxBufferedBytes;
    this.lastPingAt = this.now();
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('pong', () => (this.answeredPing = true));
    ws.on('error', (err) => this.log.debug({ err }, 'websocket error'));
    ws.on('close', () => this.closedNow());
  }

  destroy(): void {
    this.ws.terminate();
  }

  protected override carrierDue(now: number): Due | undefined {
    return now - this.lastPingAt >= this.config.carriers.wsPingIntervalMs ? 'ping' : undefined;
  }

  protected override heartbeat(): void {
    this.lastPingAt = this.now();
    if (!this.answeredPing) {
      this.log.debug('websocket peer missed a ping: dropped');
      this.ws.terminate();
      return;
    }
    this.answeredPing = false;
    this.ws.ping();
  }

  protected write(reply: Reply): boolean {
    this.ws.send(reply.bytes, { binary: true }, this.onSent);
    return this.ws.bufferedAmount <= this.maxBuffered;
  }

  /** After the error frame, a close whose reason is its code; the peer's close frame still gets through (reading goes on). */
  protected end(last: Reply | undefined): void {
    const code = last?.error;
    if (code === undefined) this.ws.close(1000);
    else this.ws.close(closeCodeFor(code), code);
  }

  protected pauseInput(): void {
    this.ws.pause();
  }

  protected resumeInput(): void {
    this.ws.resume();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closing) return;
    this.noteActivity();
    const parsed: { frame: Frame } | { code: ErrorCode } = isBinary ? parseOneFrame(data, this.config.wire) : { code: 'ROTOR_E_BAD_START_LINE' };
    if ('code' in parsed) {
      this.log.debug({ code: parsed.code }, 'protocol error');
      this.fail(parsed.code);
      return;
    }
    this.receive(parsed.frame, undefined);
    this.updateReading();
  }
}
