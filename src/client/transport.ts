import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { FrameParser, serializeFrame, type RequestFrame, type ResponseFrame } from '../wire/index.ts';
import { DEFAULTS, type WireLimits } from '../config/settings.ts';
import { asTransportError, TransportError } from './errors.ts';

/** Carries request frames to a server and their responses back, in order. */
export interface ClientTransport {
  request(frame: RequestFrame): Promise<ResponseFrame>;
  close(): void;
}

export type Connect = () => Promise<ClientTransport>;

interface Waiter {
  resolve(frame: ResponseFrame): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** A transport over any byte stream (TCP, TLS): pipelined, answers matched by order. */
export class StreamTransport implements ClientTransport {
  private readonly parser: FrameParser;
  private readonly waiting: Waiter[] = [];
  private dead: Error | undefined;

  constructor(
    private readonly socket: Duplex,
    private readonly timeoutMs: number,
    limits: WireLimits = DEFAULTS.wire,
  ) {
    this.parser = new FrameParser(limits);
    socket.on('data', (chunk: Buffer) => {
      const { frames, error } = this.parser.push(chunk);
      for (const frame of frames) {
        const waiter = this.waiting.shift();
        if (!waiter) continue;
        clearTimeout(waiter.timer);
        if (frame.kind === 'response') waiter.resolve(frame);
        else waiter.reject(new TransportError('server sent a request frame'));
      }
      if (error) this.kill(new TransportError(`bad frame from server: ${error.code}`));
    });
    socket.on('error', (err) => this.kill(new TransportError(err.message)));
    socket.on('close', () => this.kill(new TransportError('connection closed')));
  }

  request(frame: RequestFrame): Promise<ResponseFrame> {
    if (this.dead) return Promise.reject(this.dead);
    // Serialized before anything is queued: a frame the codec refuses must not leave a waiter
    // behind, or the next response would go to the wrong request.
    let bytes: Buffer;
    try {
      bytes = serializeFrame(frame);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.kill(new TransportError(`no response within ${this.timeoutMs} ms`)), this.timeoutMs);
      timer.unref();
      this.waiting.push({ resolve, reject, timer });
      this.socket.write(bytes);
    });
  }

  close(): void {
    this.kill(new TransportError('closed'));
  }

  get closed(): boolean {
    return this.dead !== undefined;
  }

  private kill(err: Error): void {
    if (!this.dead) this.dead = err;
    for (const waiter of this.waiting.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    this.socket.destroy();
  }
}

export interface TcpOptions {
  host?: string | undefined;
  port?: number | undefined;
  /**
   * Connect with TLS (`{}`: verified against the system's CAs, for `host`'s name). `ca` trusts a
   * private CA or a self-signed certificate, `servername` checks the certificate for another
   * name than `host`; `rejectUnauthorized: false` checks nothing, for tests only. A refused
   * certificate is a TlsCertificateError.
   */
  tls?: tls.ConnectionOptions | undefined;
  timeoutMs?: number | undefined;
}

export function tcpConnect(options: TcpOptions = {}): Connect {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? DEFAULTS.port;
  const timeoutMs = options.timeoutMs ?? 10_000;
  return () =>
    new Promise((resolve, reject) => {
      // SNI carries host names only (RFC 6066): for an address node checks the certificate against the address.
      const servername = net.isIP(host) === 0 ? { servername: host } : {};
      const socket: net.Socket = options.tls
        ? tls.connect({ host, port, ...servername, ...options.tls }, () => ready())
        : net.connect({ host, port }, () => ready());
      const timer = setTimeout(() => fail(new TransportError(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(asTransportError(err));
      };
      const ready = () => {
        clearTimeout(timer);
        socket.off('error', fail);
        socket.setNoDelay(true);
        resolve(new StreamTransport(socket, timeoutMs));
      };
      socket.once('error', fail);
    });
}
