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
 *   Transfer-Encoding, Upgrade) and HTTP's framing (Host, Content-Length, Expect). The list is
 *   held to the frame parser's own rules (checkFrameHead in src/wire/parser.ts), so a duplicate
 *   header, a bad name or value, too many headers or too large a block get exactly the codes
 *   they get on TCP — without writing the head out and parsing it again.
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
 *   as on TCP. HTTP's own parse errors (node:http refuses the bytes) get the nearest rotor code,
 *   after the responses owed.
 * - Order, the in-flight cap, the drain deadline and shutdown are the connection core's
 *   (core.ts; the HTTP side of it is http-connection.ts), caps and close the listener shell's.
 * - `Accept: text/html` asks for the HTML envelope instead (src/transport/html.ts).
 *
 * The login page (`/rotor/portal`, src/quotas/page.ts) is on whenever this carrier is: its
 * requests take their place in the connection's line like any other, but reach the page instead
 * of the dispatcher, and the page sends its own rotor frames through this connection's handler.
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
import { checkFrameHead } from '../wire/parser.ts';
import { Reply, type Frame, type RequestFrame } from '../wire/index.ts';
import { PORTAL_PATH, portal } from '../quotas/page.ts';
import type { FrameHandler } from './core.ts';
import { HTML_TYPE, renderEnvelope } from './html.ts';
import { fromOrigin, type ListenerHooks, type OriginAwareHandler } from './admission.ts';
import { HttpConnection } from './http-connection.ts';
import { listenOn } from './listen.ts';
import type { TokenApi } from './rest.ts';
import { ListenerShell } from './shell.ts';
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
const CANONICAL = new Map([
  ...['Token', 'User', 'Password', 'TOTP', 'Content-Type', 'Accept', 'Error', 'Task', 'Wait-for', VERB_HEADER].map((name): [string, string] => [name.toLowerCase(), name]),
  // Note 003's names for a sealed session's headers (spec §12), taken as rotor's own.
  ['x-auth-appinstanceid', 'Instance'],
  ['x-auth-seal', 'Seal'],
  ['x-auth-nonce', 'Seal-Nonce'],
  ['x-auth-cnonce', 'Seal-Proof'],
  ['x-auth-sessiontoken', 'Token'],
  ['x-auth-sealedsessiontoken', 'Token'],
]);

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
  const headers: Array<[string, string]> = [];
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
    headers.push([CANONICAL.get(lower) ?? name, rawHeaders[i + 1]]);
  }
  if (override !== undefined) {
    if (method !== 'POST') return { code: 'ROTOR_E_BAD_REQUEST' };
    if (!/^[A-Z]{1,16}$/.test(override)) return { code: 'ROTOR_E_BAD_START_LINE' };
    verb = override;
  }
  let path = url;
  if (!path.startsWith('/')) {
    // The absolute form a client sends to a proxy: only its path and query belong to rotor, as
    // sent — not normalised, which would change what a sealed request's proof covers (spec §7).
    const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(path);
    if (!scheme) return { code: 'ROTOR_E_BAD_START_LINE' };
    const rest = path.slice(scheme[0].length);
    path = rest === '' ? '/' : rest.startsWith('/') ? rest : `/${rest}`;
  }
  // The login page compares a form's Origin with the Host it was sent to: it keeps Host.
  const host = pathOnly(path) === PORTAL_PATH ? rawHeaders.findIndex((name, i) => i % 2 === 0 && name.toLowerCase() === 'host') : -1;
  if (host !== -1) headers.push(['Host', rawHeaders[host + 1]]);
  // The parser's own rules, so what TCP refuses is refused here with the same code.
  const checked = checkFrameHead(verb, path, headers, wire);
  if ('code' in checked) return checked;
  return { frame: { kind: 'request', verb, path, headers: checked.headers, body: undefined } };
}

/**
 * Write a reply onto its response: status, reason, the reply's headers and body (or the HTML
 * envelope, when asked for and the reply is not a page of its own), plus `Cache-Control:
 * no-store` and Content-Length, and `Connection: close` when the socket closes after it. No
 * Date: a replayed reply is the same response byte for byte.
 */
export function writeResponse(res: http.ServerResponse, reply: Reply, html: boolean, close: boolean): void {
  const frame = reply.frame;
  const flat: string[] = [];
  let body: Buffer;
  const envelope = html && !PAGES.has(reply);
  if (envelope) {
    flat.push('Content-Type', HTML_TYPE);
    body = Buffer.from(renderEnvelope(frame));
  } else {
    for (const [name, value] of frame.headers) {
      if (RESPONSE_OWNED.has(name.toLowerCase())) continue;
      // HTTP header values are bytes; node writes a string's chars as latin1, so hand it the UTF-8 bytes that way.
      flat.push(name, /^[\x20-\x7e\t]*$/.test(value) ? value : Buffer.from(value, 'utf8').toString('latin1'));
    }
    body = frame.body ?? EMPTY;
  }
  flat.push('Cache-Control', 'no-store', 'Content-Length', String(body.length));
  if (close) flat.push('Connection', 'close');
  res.sendDate = false;
  if (envelope) res.writeHead(200, 'OK', flat);
  else res.writeHead(frame.status, frame.reason, flat);
  res.end(body);
}

const EMPTY = Buffer.alloc(0);

/** Replies that are web pages themselves (the login page's): written as they are, never in the envelope. */
const PAGES = new WeakSet<Reply>();

/** `handler`, except that a request for the login page gets the page, which dispatches its own frames through `handler`. */
function withPortal(handler: FrameHandler): FrameHandler {
  return {
    dispatch: (frame: Frame) => (frame.kind === 'request' && pathOnly(frame.path) === PORTAL_PATH ? portalReply(frame, handler) : handler.dispatch(frame)),
  };
}

async function portalReply(frame: RequestFrame, handler: FrameHandler): Promise<Reply> {
  const page = await portal({ method: frame.verb, headers: frame.headers, body: frame.body }, (sent) => handler.dispatch(sent));
  const reply = Reply.of(page.status, page.headers, page.body);
  PAGES.add(reply);
  return reply;
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
 * One HTTP (or HTTPS) listener: node:http's server, the listener shell around it (caps,
 * refusal, the sweep, graceful close), an HttpConnection per socket, and the WebSocket
 * upgrades and token API that share its port.
 */
class HttpCarrier {
  readonly shell: ListenerShell;
  readonly server: http.Server;
  private readonly connections = new WeakMap<Duplex, HttpConnection>();
  private readonly ws: WebSocketCarrier | undefined;
  private readonly wsPath: string;
  private wsLive = 0;

  constructor(
    private readonly handler: OriginAwareHandler,
    private readonly config: RotorConfig,
    private readonly log: Logger,
    private readonly options: HttpListenOptions,
  ) {
    this.shell = new ListenerShell(config.connection, 'http', options.hooks);
    this.ws = options.ws ? new WebSocketCarrier(handler, config, log) : undefined;
    this.wsPath = options.wsPath ?? DEFAULT_WS_PATH;
    this.server = createServer(config, options.tls);
    const server = this.server;
    server.on('connection', (socket: net.Socket) => this.onConnection(socket));
    // node:http's HTTPS server reads requests from the TLS socket once its handshake is done.
    if (options.tls) server.on('secureConnection', (socket: net.Socket) => this.attach(socket));
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.connections.get(req.socket)?.request(req, res));
    server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
      // Refuse an oversized body before the client sends it; otherwise let it come.
      if (Number(req.headers['content-length'] ?? 0) <= config.wire.maxBodyBytes) res.writeContinue();
      this.connections.get(req.socket)?.request(req, res);
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('tlsClientError', (err: Error) => log.debug({ err }, 'TLS handshake failed'));
  }

  get webSockets(): number {
    return this.wsLive;
  }

  private onConnection(socket: net.Socket): void {
    // Before a TLS handshake there is no way to say why; in plain HTTP there is.
    if (!this.shell.admit(socket, this.options.tls ? undefined : rawErrorResponse)) return;
    if (!this.options.tls) this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    const handler = withPortal(fromOrigin(this.handler, { carrier: 'http', peer: socket.remoteAddress }));
    const connection = new HttpConnection(socket, handler, {
      config: this.config,
      log: this.log,
      tokenApi: this.options.tokenApi,
      maxHeadersCount: this.server.maxHeadersCount ?? Infinity,
    });
    this.connections.set(socket, connection);
    this.shell.add(connection);
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const connection = this.connections.get(socket);
    const code = clientErrorCode(err.code, connection?.readingBody ?? false);
    this.log.debug({ code, err: err.code }, 'HTTP protocol error');
    if (connection && err.code !== 'ECONNRESET' && socket.writable) connection.parseError(code);
    else socket.destroy();
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {});
    const connection = this.connections.get(socket);
    const wantsWs = (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
    if (this.shell.shuttingDown || !connection) socket.end(rawErrorResponse('ROTOR_E_SHUTTING_DOWN'));
    else if (!this.ws || !wantsWs || pathOnly(req.url ?? '/') !== this.wsPath) socket.end(rawErrorResponse('ROTOR_E_NOT_FOUND'));
    else {
      connection.handOver();
      this.ws.handleUpgrade(req, socket, head, (ws) => {
        this.wsLive++;
        ws.whenClosed(() => this.wsLive--);
        this.shell.add(ws);
      });
    }
  }
}

export async function listenHttp(handler: OriginAwareHandler, config: RotorConfig, log: Logger, options: HttpListenOptions): Promise<HttpListener> {
  const carrier = new HttpCarrier(handler, config, log, options);
  const bound = await listenOn(carrier.server, options.port, options.host, config.connection.listenBacklog, log, 'HTTP');
  return {
    address: { host: bound.address, port: bound.port },
    get connections() {
      return carrier.shell.admission.connections;
    },
    get webSockets() {
      return carrier.webSockets;
    },
    close: () => carrier.shell.close(carrier.server),
  };
}

/** node:http's server with rotor's limits (spec.md §7 "Limits"). */
function createServer(config: RotorConfig, tls: HttpListenOptions['tls']): http.Server {
  const { wire, connection: limits, carriers } = config;
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
  const server = tls
    ? https.createServer({ ...serverOptions, key: tls.key, cert: tls.cert, allowHalfOpen: true })
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
  return server;
}

function pathOnly(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}
