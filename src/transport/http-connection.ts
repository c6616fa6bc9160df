/**
 * One HTTP/1.1 socket on the connection core (core.ts): each request takes its place in the
 * line when node:http hands it over, and its reply is mapped onto its own ServerResponse once
 * its turn comes (http.ts has the mapping). The core keeps the order, the in-flight gate, the
 * drain deadline, protocol errors and shutdown; node:http keeps HTTP's own deadlines (header,
 * request, keep-alive) and the half-close (it ends the socket after the last response once the
 * peer's FIN came: `httpAllowHalfOpen`).
 *
 * What only HTTP has: a reply can only answer a request. So an error frame no request asked
 * for is written as a raw response after every response before it has gone out (node:http's
 * parse errors), and at shutdown the ROTOR_E_SHUTTING_DOWN frame answers the first request not
 * run, or the first to arrive during the grace — and an idle keep-alive socket is closed
 * without a word.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { RotorConfig } from '../config/defaults.ts';
import { ERRORS, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { errorReply, Reply, type RequestFrame } from '../wire/index.ts';
import { ConnectionCore, linger, type FrameHandler } from './core.ts';
import { frameHead, rawErrorResponse, writeResponse } from './http.ts';
import { wantsHtml } from './html.ts';
import type { TokenApi } from './rest.ts';

/** The response a reply goes on, and how (the HTML envelope or not). */
interface Exchange {
  readonly res: http.ServerResponse;
  html: boolean;
}

export interface HttpConnectionDeps {
  config: RotorConfig;
  log: Logger;
  tokenApi: TokenApi | undefined;
  /** node:http's maxHeadersCount: reaching it means headers may have been cut off. */
  maxHeadersCount: number;
}

/** How long a socket reads and discards after its last answer before it is dropped. */
const LINGER_MS = 2_000;

/** An HTTP connection holds at most this many × connection.maxInFlight requests unanswered (spec §7). */
export const HTTP_HELD_PER_IN_FLIGHT = 64;

export class HttpConnection extends ConnectionCore<Exchange> {
  /** A request body is arriving: reading must not pause (node would time the request out). */
  private inBody = false;
  private wantPaused = false;
  /** Responses handed to node and not yet flushed to the peer. */
  private unfinished = 0;
  private whenFlushed: (() => void) | undefined;
  /** The raw response an error frame no request asked for becomes. */
  private rawAnswer: string | undefined;

  constructor(
    readonly socket: net.Socket,
    handler: FrameHandler,
    private readonly deps: HttpConnectionDeps,
  ) {
    // node:http closes idle keep-alive sockets itself (keepAliveTimeout): no idle deadline here.
    super(handler, deps.config.connection, deps.log, { refillLater: true, idleTimeoutMs: 0 });
    socket.on('drain', () => {
      if (this.drainingSince !== 0) this.drained();
    });
    socket.once('close', () => this.closedNow());
    lingerWhenNodeCloses(socket);
  }

  /** A body is being read (a timeout now is a frame timeout, not a header timeout). */
  get readingBody(): boolean {
    return this.inBody;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The socket was upgraded to a WebSocket: this connection is done, the socket lives on. */
  handOver(): void {
    this.closedNow();
  }

  /** node:http parsed a request on this socket. */
  /** Requests that came after the connection stopped taking any. */
  private afterClosing = 0;

  request(req: http.IncomingMessage, res: http.ServerResponse): void {
    const exchange: Exchange = { res, html: wantsHtml(req.headers.accept) };
    if (this.closing) {
      // Nothing more is run; the first to arrive during the shutdown may get its 503. A peer that
      // keeps pipelining past the cap after being told is cut off: node:http would keep parsing
      // (and holding a response object for) every request it sends.
      if (++this.afterClosing > HTTP_HELD_PER_IN_FLIGHT * this.deps.config.connection.maxInFlight) {
        this.socket.destroy();
        return;
      }
      req.resume();
      this.takesFinal(exchange);
      return;
    }
    // node:http parses and hands over requests whatever rotor's pause says (it reads the socket
    // itself, and reading a body resumes it): the line is bounded here instead, at what one
    // read of small pipelined requests brings many times over.
    if (this.owed >= HTTP_HELD_PER_IN_FLIGHT * this.deps.config.connection.maxInFlight) {
      this.fail('ROTOR_E_TOO_MANY_PIPELINED');
      return;
    }
    const entry = this.enter(exchange);
    const { wire } = this.deps.config;
    const url = req.url ?? '/';
    const rest = this.deps.tokenApi?.owns(url) ? this.deps.tokenApi : undefined;
    const head = rest ? undefined : frameHead(req.method ?? 'GET', url, req.rawHeaders, wire);
    const refusal: ErrorCode | undefined =
      req.rawHeaders.length / 2 >= this.deps.maxHeadersCount ? 'ROTOR_E_TOO_MANY_HEADERS' : head && 'code' in head ? head.code : undefined;
    if (refusal) {
      if (!ERRORS[refusal].fatal) req.resume();
      this.settle(entry, errorReply(refusal));
      return;
    }
    this.readBody(req, wire.maxBodyBytes, (result) => {
      if (result === undefined) return this.abandon(entry); // the peer went away mid-body
      if ('code' in result) return this.settle(entry, errorReply(result.code));
      if (rest) {
        exchange.html = false;
        return this.ready(entry, () => restReply(rest, req, url, result.body, this.log));
      }
      const frame: RequestFrame = { ...(head as { frame: RequestFrame }).frame, body: result.body };
      this.ready(entry, frame);
    });
  }

  /** node:http could not parse what came (or timed it out): the responses owed, then this code, then close. */
  parseError(code: ErrorCode): void {
    this.fail(code);
  }

  protected write(reply: Reply, exchange: Exchange | undefined): boolean {
    if (exchange === undefined) {
      // A frame no request asked for: a parse error gets its raw response (after the others are
      // out, in end()); ROTOR_E_SHUTTING_DOWN on an idle socket gets nothing — HTTP cannot speak unasked.
      if (reply.error !== 'ROTOR_E_SHUTTING_DOWN') this.rawAnswer = rawErrorResponse(reply.error ?? 'ROTOR_E_INTERNAL');
      return true;
    }
    const { res } = exchange;
    if (res.headersSent || res.destroyed) return true;
    writeResponse(res, reply, exchange.html, reply.close || this.lastBeforeSilentEnd());
    if (!res.writableFinished) {
      this.unfinished++;
      let counted = true;
      const done = () => {
        if (!counted) return;
        counted = false;
        if (--this.unfinished === 0) this.whenFlushed?.();
      };
      res.once('finish', done);
      res.once('close', done);
    }
    return !this.socket.writableNeedDrain;
  }

  /** The connection ends: once node has flushed every response, the raw answer (if any), then the close. */
  protected end(): void {
    const close = () => linger(this.socket, LINGER_MS, this.rawAnswer);
    if (this.unfinished === 0) close();
    else this.whenFlushed = close;
  }

  protected pauseInput(): void {
    this.wantPaused = true;
    if (!this.inBody) this.socket.pause();
  }

  protected resumeInput(): void {
    this.wantPaused = false;
    this.socket.resume();
  }

  /** Shutting down, and the next thing written is the final frame no request will carry: this response must say `Connection: close`. */
  private lastBeforeSilentEnd(): boolean {
    const final = this.final;
    return final !== undefined && final.context === undefined && this.owed === 1 && final.reply?.error === 'ROTOR_E_SHUTTING_DOWN';
  }

  private bodyStarts(): void {
    this.inBody = true;
    if (this.wantPaused) this.socket.resume();
  }

  private bodyEnds(): void {
    this.inBody = false;
    if (this.wantPaused) this.socket.pause();
  }

  /**
   * Read a request body of at most `max` bytes. No Content-Length and no Transfer-Encoding: no
   * body. A Content-Length over `max` is refused unread; a chunked body is cut when it passes
   * `max`. Calls `done` once, with undefined when the peer went away first.
   */
  private readBody(req: http.IncomingMessage, max: number, done: (result: BodyResult | undefined) => void): void {
    const length = req.headers['content-length'];
    if (length === undefined && req.headers['transfer-encoding'] === undefined) {
      // Not req.resume(): that resumes the socket too, undoing the pause that holds the peer
      // back. node:http drains an unread request itself once its response is finished.
      done({ body: undefined });
      return;
    }
    if (length !== undefined && Number(length) > max) {
      done({ code: 'ROTOR_E_BODY_TOO_LARGE' });
      return;
    }
    this.bodyStarts();
    const chunks: Buffer[] = [];
    let total = 0;
    let finished = false;
    const finish = (result: BodyResult | undefined): void => {
      if (finished) return;
      finished = true;
      this.bodyEnds();
      req.off('data', onData);
      done(result);
    };
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > max) {
        req.pause();
        finish({ code: 'ROTOR_E_BODY_TOO_LARGE' });
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish({ body: Buffer.concat(chunks, total) }));
    req.once('close', () => finish(undefined));
    req.once('error', () => finish(undefined));
  }
}

type BodyResult = { body: Buffer | undefined } | { code: ErrorCode };

/** A token API call, answered as a reply (its status, headers and body are written as they are). */
async function restReply(rest: TokenApi, req: http.IncomingMessage, url: string, body: Buffer | undefined, log: Logger): Promise<Reply> {
  try {
    const answer = await rest.handle({ method: req.method ?? 'GET', url, contentType: req.headers['content-type'], body });
    return Reply.of(answer.status, answer.headers, answer.body);
  } catch (err) {
    log.error({ err }, 'token API failed');
    return errorReply('ROTOR_E_INTERNAL');
  }
}

/**
 * The one place rotor reaches into node:http. After a response that says `Connection: close`
 * node ends the socket with `socket.destroySoon()` — end, then destroy once written — and
 * unread input then turns the close into a reset that can overtake the response. node gives no
 * public way to end such a socket otherwise, so its destroySoon lingers instead (core.ts).
 */
function lingerWhenNodeCloses(socket: net.Socket): void {
  (socket as net.Socket & { destroySoon?: () => void }).destroySoon = () => linger(socket, LINGER_MS);
}
