/**
 * rotor over HTTP/1.1 (and HTTPS): node:http parses HTTP, rotor never does. Each HTTP request
 * is one rotor request frame and goes through the one dispatch path; the reply frame is mapped
 * back onto the HTTP response. The same listener serves WebSocket upgrades (src/transport/ws.ts)
 * and note 004's token API (src/transport/rest.ts) when they are enabled.
 *
 * Request → frame
 * - verb and path are the HTTP method and request target. Rotor verbs HTTP does not know (and
 *   any verb, for proxies that pass only POST) travel as `POST` with the verb in `X-Rotor-Verb`.
 *   X-Rotor-Verb on anything but a POST is ROTOR_E_BAD_REQUEST.
 * - headers: every HTTP header in arrival order, names as sent (rotor's own — Token, User,
 *   Password, TOTP, Content-Type… — spelled canonically whatever case arrived), except the
 *   hop-by-hop ones (Connection and what it names, Keep-Alive, Proxy-Connection, TE, Trailer,
 *   Transfer-Encoding, Upgrade) and HTTP's framing (Host, Content-Length, Expect). The head
 *   built from them is parsed by the same FrameParser as TCP bytes, so a duplicate header, a bad
 *   name or value, too many headers or too large a block get exactly the codes they get on TCP.
 *   A `BIN-Length` header is ROTOR_E_BAD_HEADER: over HTTP the body is framed by HTTP.
 * - body: the HTTP body (Content-Length or chunked); no Content-Length and no Transfer-Encoding
 *   means no body (`body: undefined`), `Content-Length: 0` an empty one. A Content-Length over
 *   wire.maxBodyBytes is refused before a byte is read (413 ROTOR_E_BODY_TOO_LARGE, also in
 *   answer to `Expect: 100-continue`); a chunked body is counted as it streams and cut there.
 *
 * Reply → response
 * - status, reason, headers (Token, Error, Task, Wait-for, Content-Type, the application's) and
 *   body of the reply frame, plus `Cache-Control: no-store` (tokens must never be cached) and
 *   Content-Length. No Date header: a replay is byte-for-byte the same response.
 * - A fatal rotor error (any protocol error) adds `Connection: close` and ends the connection,
 *   as on TCP. HTTP's own parse errors (node:http refuses the bytes) get the nearest rotor code.
 * - `Accept: text/html` asks for the HTML envelope instead (src/transport/html.ts).
 *
 * Limits follow the TCP ones: header block wire.maxHeaderBytes (+ carriers.httpHeaderSlackBytes
 * for HTTP's own lines), body wire.maxBodyBytes, headersTimeout = connection.headerTimeoutMs,
 * requestTimeout = connection.frameTimeoutMs, keepAliveTimeout = connection.idleTimeoutMs,
 * connection.maxInFlight requests of one socket dispatched at once (pipelined requests beyond
 * that wait, and the socket is paused), connection.maxConnections sockets and
 * connection.maxConnectionsPerAddress of them from one address (src/transport/admission.ts), drainTimeoutMs for
 * a peer that does not read its responses, shutdownGraceMs on close.
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { ERRORS, reasonFor, type ErrorCode } from '../errors.ts';
import type { RotorConfig, WireLimits } from '../config/defaults.ts';
import type { Logger } from '../log/index.ts';
import { errorReply, parseOneFrame, PROTOCOL_VERSION, type Reply, type RequestFrame } from '../wire/index.ts';
import type { FrameHandler } from './connection.ts';
import { HTML_TYPE, renderEnvelope, wantsHtml } from './html.ts';
import { dispatchSafely, InFlightGate, ReadSwitch } from './gate.ts';
import { Admission, fromOrigin, refuse, type ListenerHooks, type OriginAwareHandler } from './admission.ts';
import { listenOn } from './listen.ts';
import { Sweeper } from './sweep.ts';
import type { HttpAnswer, TokenApi } from './rest.ts';
import type { Listener } from './tcp.ts';
import { DEFAULT_WS_PATH, WebSocketCarrier } from './ws.ts';

export interface HttpListenOptions {
  host: string;
  port: number;
  /** PEM key and certificate: HTTPS (and WSS). */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Answer WebSocket upgrades (at `wsPath`). */
  ws?: boolean;
  wsPath?: string;
  /** Serve note 004's token API on /token and /dump. */
  tokenApi?: TokenApi | undefined;
  hooks?: ListenerHooks | undefined;
}

export interface HttpListener extends Listener {
  readonly webSockets: number;
}

export const VERB_HEADER = 'X-Rotor-Verb';
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const HTTP_FRAMING = new Set(['host', 'content-length', 'expect']);
/** Response headers HTTP frames itself (or that rotor sets for every response); a reply's own are dropped. */
const RESPONSE_OWNED = new Set([...HOP_BY_HOP, 'content-length', 'cache-control', 'date']);
const CANONICAL = new Map(
  ['Token', 'User', 'Password', 'TOTP', 'Content-Type', 'Accept', 'Error', 'Task', 'Wait-for', VERB_HEADER].map((name) => [name.toLowerCase(), name]),
);

/**
 * The request frame (without its body) an HTTP request stands for, or the code it is refused
 * with. `rawHeaders` as node gives them: name, value, name, value…, values as latin1 bytes.
 */
export function frameHead(method: string, url: string, rawHeaders: readonly string[], wire: WireLimits): { frame: RequestFrame } | { code: ErrorCode } {
  const hop = new Set(HOP_BY_HOP);
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() !== 'connection') continue;
    for (const token of rawHeaders[i + 1].split(',')) hop.add(token.trim().toLowerCase());
  }
  let verb = method;
  let override: string | undefined;
  let head = '';
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    const lower = name.toLowerCase();
    if (lower === 'x-rotor-verb') {
      if (override !== undefined) return { code: 'ROTOR_E_DUPLICATE_HEADER' };
      override = rawHeaders[i + 1];
      continue;
    }
    if (hop.has(lower) || HTTP_FRAMING.has(lower)) continue;
    if (lower === 'bin-length') return { code: 'ROTOR_E_BAD_HEADER' };
    head += `${CANONICAL.get(lower) ?? name}: ${rawHeaders[i + 1]}\r\n`;
  }
  if (override !== undefined) {
    if (method !== 'POST') return { code: 'ROTOR_E_BAD_REQUEST' };
    if (!/^[A-Z]{1,16}$/.test(override)) return { code: 'ROTOR_E_BAD_START_LINE' };
    verb = override;
  }
  let path = url;
  if (!path.startsWith('/')) {
    // The absolute form a client sends to a proxy: only its path and query belong to rotor.
    try {
      const absolute = new URL(url);
      path = absolute.pathname + absolute.search;
    } catch {
      return { code: 'ROTOR_E_BAD_START_LINE' };
    }
  }
  // The same parser as TCP bytes get: what it refuses there is refused here with the same code.
  const parsed = parseOneFrame(Buffer.from(`${verb} ${path} ${PROTOCOL_VERSION}\r\n${head}\r\n`, 'latin1'), wire);
  if ('code' in parsed) return parsed;
  if (parsed.frame.kind !== 'request') return { code: 'ROTOR_E_BAD_START_LINE' };
  return { frame: parsed.frame };
}

/** How a rotor reply is answered over HTTP: as it is, or in the HTML envelope. */
export function replyAnswer(reply: Reply, html: boolean): HttpAnswer & { reason: string } {
  const frame = reply.frame;
  if (html) return { status: 200, reason: 'OK', headers: [['Content-Type', HTML_TYPE]], body: Buffer.from(renderEnvelope(frame)) };
  return { status: frame.status, reason: frame.reason, headers: [...frame.headers], body: frame.body };
}

/** A complete HTTP error response for places where there is no ServerResponse (parse errors, refusals). */
export function rawErrorResponse(code: ErrorCode): string {
  const status = ERRORS[code].status;
  return `HTTP/1.1 ${status} ${reasonFor(status)}\r\nError: ${code}\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`;
}

/** The rotor code for an error node:http raised while parsing a request. */
export function clientErrorCode(code: string | undefined, inBody: boolean): ErrorCode {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return 'ROTOR_E_HEADERS_TOO_LARGE';
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CHUNK_SIZE':
      return 'ROTOR_E_BAD_LENGTH';
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return 'ROTOR_E_BAD_HEADER';
    case 'HPE_CR_EXPECTED':
    case 'HPE_LF_EXPECTED':
    case 'HPE_STRICT':
      return 'ROTOR_E_BAD_LINE_ENDING';
    case 'HPE_INVALID_EOF_STATE':
      return 'ROTOR_E_TRUNCATED';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return inBody ? 'ROTOR_E_FRAME_TIMEOUT' : 'ROTOR_E_HEADER_TIMEOUT';
    default:
      return 'ROTOR_E_BAD_START_LINE';
  }
}

/**
 * The requests of one socket. node:http already answers pipelined requests in order; the lane
 * adds the in-flight cap (dispatches start in arrival order, at most maxInFlight at once, the
 * socket paused meanwhile), the drain deadline and the linger after a fatal error.
 */
class Lane {
  readonly gate: InFlightGate;
  private readonly reading: ReadSwitch;
  /** A fatal reply was sent: nothing more is answered on this socket. */
  closed = false;
  /** A request body is being read (a timeout now is a frame timeout, not a header timeout). */
  inBody = false;
  /** Responses handed to node but not yet flushed to the peer, with when they were ended. */
  readonly unflushed = new Map<http.ServerResponse, number>();

  constructor(
    readonly socket: net.Socket,
    /** The rotor handler, told this socket's peer. */
    readonly handler: FrameHandler,
    maxInFlight: number,
  ) {
    this.gate = new InFlightGate(maxInFlight, () => this.updateReading());
    this.reading = new ReadSwitch(() => socket.pause(), () => socket.resume());
  }

  /** How long the oldest response handed to node has waited for the peer to read it (0: none waits). */
  stalledSince(now: number): number {
    const oldest = this.unflushed.values().next();
    return oldest.done ? 0 : now - oldest.value;
  }

  updateReading(): void {
    // Never pause while a body is arriving: the request it belongs to could not complete.
    this.reading.set(!this.closed && this.gate.full && !this.inBody);
  }

  /** After a fatal reply: read and discard for a moment, so the peer gets the answer rather than a reset. */
  linger(): void {
    this.closed = true;
    this.gate.clear();
    const socket = this.socket as net.Socket & { destroySoon?: () => void };
    // node:http ends the socket with destroySoon() once the response is out; unread input
    // would then turn the close into a reset that can overtake the response.
    socket.destroySoon = () => {
      socket.end();
      socket.resume();
      setTimeout(() => socket.destroy(), 2_000).unref();
    };
  }
}

export async function listenHttp(handler: OriginAwareHandler, config: RotorConfig, log: Logger, options: HttpListenOptions): Promise<HttpListener> {
  const { wire, connection: limits, carriers } = config;
  const live = new Set<net.Socket>();
  const lanes = new Map<net.Socket, Lane>();
  const refused = new WeakSet<net.Socket>();
  const admission = new Admission(limits, 'http', options.hooks);
  const ws = options.ws ? new WebSocketCarrier(handler, config, log) : undefined;
  const wsPath = options.wsPath ?? DEFAULT_WS_PATH;
  const tokenApi = options.tokenApi;
  let closing: Promise<void> | undefined;
  let allGone: (() => void) | undefined;

  const laneOf = (socket: net.Socket): Lane => {
    let lane = lanes.get(socket);
    if (!lane) {
      lane = new Lane(socket, fromOrigin(handler, { carrier: 'http', peer: socket.remoteAddress }), limits.maxInFlight);
      lanes.set(socket, lane);
      socket.once('close', () => lanes.delete(socket));
    }
    return lane;
  };

  const write = (lane: Lane, res: http.ServerResponse, answer: HttpAnswer & { reason?: string }, fatal: boolean): void => {
    if (res.headersSent || res.destroyed) return;
    const close = fatal || closing !== undefined;
    const flat: string[] = [];
    for (const [name, value] of answer.headers) {
      if (RESPONSE_OWNED.has(name.toLowerCase())) continue;
      // HTTP header values are bytes; node writes a string's chars as latin1, so hand it the UTF-8 bytes that way.
      flat.push(name, /^[\x20-\x7e\t]*$/.test(value) ? value : Buffer.from(value, 'utf8').toString('latin1'));
    }
    const body = answer.body ?? Buffer.alloc(0);
    flat.push('Cache-Control', 'no-store', 'Content-Length', String(body.length));
    if (close) flat.push('Connection', 'close');
    if (fatal) lane.linger();
    res.sendDate = false;
    res.writeHead(answer.status, answer.reason ?? reasonFor(answer.status), flat);
    res.end(body);
    if (!res.writableFinished) {
      lane.unflushed.set(res, Date.now());
      res.once('finish', () => lane.unflushed.delete(res));
      res.once('close', () => lane.unflushed.delete(res));
    }
  };

  const writeReply = (lane: Lane, res: http.ServerResponse, reply: Reply, html: boolean): void => {
    write(lane, res, replyAnswer(reply, html), reply.close);
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const socket = req.socket;
    if (refused.has(socket)) return;
    const lane = laneOf(socket);
    if (lane.closed) return;
    const html = wantsHtml(req.headers.accept);
    if (closing) {
      writeReply(lane, res, errorReply('ROTOR_E_SHUTTING_DOWN'), html);
      return;
    }
    const url = req.url ?? '/';
    const rest = tokenApi?.owns(url) ? tokenApi : undefined;
    const head = rest ? undefined : frameHead(req.method ?? 'GET', url, req.rawHeaders, wire);
    const rawCount = req.rawHeaders.length / 2;
    const start = lane.gate.enter();
    const ready = (run: () => Promise<void> | void): void =>
      start(async () => {
        if (!lane.closed) await run();
      });
    // node:http stops counting at maxHeadersCount: reaching it means headers may have been cut off.
    const refusal: ErrorCode | undefined =
      rawCount >= (server.maxHeadersCount ?? Infinity) ? 'ROTOR_E_TOO_MANY_HEADERS' : head && 'code' in head ? head.code : undefined;
    if (refusal) {
      if (!ERRORS[refusal].fatal) req.resume();
      ready(() => writeReply(lane, res, errorReply(refusal), html));
      return;
    }
    readBody(req, wire.maxBodyBytes, lane, (result) => {
      if (result === undefined) return ready(() => undefined); // the peer went away mid-body
      if ('code' in result) return ready(() => writeReply(lane, res, errorReply(result.code), html));
      if (rest) {
        return ready(async () => {
          const contentType = req.headers['content-type'];
          let answer: HttpAnswer;
          try {
            answer = await rest.handle({ method: req.method ?? 'GET', url, contentType, body: result.body });
          } catch (err) {
            log.error({ err }, 'token API failed');
            answer = replyAnswer(errorReply('ROTOR_E_INTERNAL'), false);
          }
          write(lane, res, answer, false);
        });
      }
      const frame: RequestFrame = { ...(head as { frame: RequestFrame }).frame, body: result.body };
      ready(async () => writeReply(lane, res, await dispatchSafely(lane.handler, frame, log), html));
    });
  };

  const serverOptions: http.ServerOptions = {
    maxHeaderSize: wire.maxHeaderBytes + carriers.httpHeaderSlackBytes,
    requestTimeout: limits.frameTimeoutMs,
    headersTimeout: limits.headerTimeoutMs,
    connectionsCheckingInterval: limits.sweepIntervalMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    insecureHTTPParser: false,
    joinDuplicateHeaders: false,
    // rotor needs no Host; a request without one is a request like any other.
    requireHostHeader: false,
    noDelay: true,
  };
  // A client that half-closes after its requests still gets every response: node:http's plain
  // server socket is half-open already, HTTPS's needs asking; and node:http itself ends the socket
  // (dropping the responses still being worked on) unless httpAllowHalfOpen, after which it ends
  // it once the last response is out.
  const server = options.tls
    ? https.createServer({ ...serverOptions, key: options.tls.key, cert: options.tls.cert, allowHalfOpen: true })
    : http.createServer(serverOptions);
  (server as { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen = true; // not in @types/node; node:http has had it since 0.x
  server.keepAliveTimeout = limits.idleTimeoutMs;
  server.headersTimeout = limits.headerTimeoutMs;
  server.requestTimeout = limits.frameTimeoutMs;
  server.maxRequestsPerSocket = carriers.httpMaxRequestsPerSocket;
  // Counted generously (hop-by-hop and framing headers never reach the frame); the frame itself
  // is then held to wire.maxHeaders by the parser.
  server.maxHeadersCount = 2 * wire.maxHeaders + 16;
  server.timeout = 0;

  server.on('request', onRequest);
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    // Refuse an oversized body before the client sends it; otherwise let it come.
    if (Number(req.headers['content-length'] ?? 0) <= wire.maxBodyBytes) res.writeContinue();
    onRequest(req, res);
  });
  server.on('connection', (socket: net.Socket) => {
    const refusal = admission.admit(socket, closing !== undefined);
    if (refusal) {
      refused.add(socket);
      // Before a TLS handshake there is no way to say why; in plain HTTP there is.
      refuse(socket, options.tls ? undefined : rawErrorResponse(refusal));
      return;
    }
    live.add(socket);
    socket.once('close', () => {
      live.delete(socket);
      if (live.size === 0) allGone?.();
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const lane = lanes.get(socket as net.Socket);
    const code = clientErrorCode(err.code, lane?.inBody ?? false);
    log.debug({ code, err: err.code }, 'HTTP protocol error');
    const inFlight = (socket as Duplex & { _httpMessage?: http.ServerResponse })._httpMessage;
    // Answer only where no response is on its way out (node:http's own rule), then close.
    if (err.code !== 'ECONNRESET' && socket.writable && !lane?.closed && (!inFlight || !inFlight.headersSent)) {
      socket.end(rawErrorResponse(code));
      socket.resume();
      setTimeout(() => socket.destroy(), 2_000).unref();
    } else {
      socket.destroy();
    }
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    const wantsWs = (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
    if (closing) socket.end(rawErrorResponse('ROTOR_E_SHUTTING_DOWN'));
    else if (!ws || !wantsWs || pathOnly(req.url ?? '/') !== wsPath) socket.end(rawErrorResponse('ROTOR_E_NOT_FOUND'));
    else ws.handleUpgrade(req, socket, head);
  });
  server.on('tlsClientError', (err: Error) => log.debug({ err }, 'TLS handshake failed'));

  // node:http enforces its own header, request and keep-alive timeouts; the drain deadline is rotor's.
  const sweeper = new Sweeper(
    () => lanes.values(),
    (lane, now) => !lane.socket.destroyed && lane.stalledSince(now) > limits.drainTimeoutMs,
    (lane) => {
      log.debug('HTTP peer stopped reading: dropped');
      lane.socket.destroy();
    },
    { intervalMs: limits.sweepIntervalMs, batchSize: limits.sweepBatchSize },
  );

  const bound = await listenOn(server, options.port, options.host, limits.listenBacklog, log, 'HTTP');

  return {
    address: { host: bound.address, port: bound.port },
    get connections() {
      return live.size;
    },
    get webSockets() {
      return ws?.connections ?? 0;
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        ws?.shutdown();
        const gone = live.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => (allGone = resolve));
        const grace = new Promise<void>((resolve) => setTimeout(resolve, limits.shutdownGraceMs).unref());
        await Promise.race([gone, grace]);
        ws?.destroy();
        server.closeAllConnections();
        for (const socket of live) socket.destroy();
        sweeper.stop();
        await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 100).unref())]);
      })();
      return closing;
    },
  };
}

function pathOnly(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

type BodyResult = { body: Buffer | undefined } | { code: ErrorCode };

/**
 * Read a request body of at most `max` bytes. No Content-Length and no Transfer-Encoding: no
 * body. A Content-Length over `max` is refused unread; a chunked body is cut when it passes
 * `max`. Calls `done` once, with undefined when the peer went away first.
 */
function readBody(req: http.IncomingMessage, max: number, lane: Lane, done: (result: BodyResult | undefined) => void): void {
  const length = req.headers['content-length'];
  if (length === undefined && req.headers['transfer-encoding'] === undefined) {
    req.resume();
    done({ body: undefined });
    return;
  }
  if (length !== undefined && Number(length) > max) {
    done({ code: 'ROTOR_E_BODY_TOO_LARGE' });
    return;
  }
  lane.inBody = true;
  lane.updateReading();
  const chunks: Buffer[] = [];
  let total = 0;
  let finished = false;
  const finish = (result: BodyResult | undefined): void => {
    if (finished) return;
    finished = true;
    lane.inBody = false;
    lane.updateReading();
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
