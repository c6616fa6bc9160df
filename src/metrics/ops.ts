/**
 * The operations listener: its own node:http server on `observability.metricsPort` (loopback by
 * default), apart from every rotor carrier, so scrapes and probes never compete with clients for
 * connection slots and never reach the dispatcher.
 *
 *   GET /metrics   Prometheus text format
 *   GET /livez     200 while the process runs
 *   GET /readyz    200 when rotor can serve (listeners up, the store answering), else 503 with why
 */
import http from 'node:http';
import type { Logger } from '../log/index.ts';
import type { Socket } from 'node:net';
import { Admission } from '../transport/admission.ts';
import { listenOn } from '../transport/listen.ts';
import type { Metrics } from './metrics.ts';

export interface OpsListenOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  metrics: Metrics;
  /** Why rotor cannot serve now, or undefined when it can. May reject or hang: both count as not ready. */
  unready: () => Promise<string | undefined>;
  /** A readiness check that takes longer is not ready. Default 1 s (Kubernetes' default probe timeout). */
  readyTimeoutMs?: number | undefined;
  log: Logger;
}

export interface OpsListener {
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

/** Probes and scrapes are few; more than this many connections at once is a misconfiguration, not load. */
const MAX_CONNECTIONS = 64;
/**
 * One address holds at most this many, so a few idle sockets from one peer cannot hold every slot
 * and turn a liveness probe red (a hostile review did it with 64).
 */
const MAX_CONNECTIONS_PER_ADDRESS = 8;

export async function listenOps(options: OpsListenOptions): Promise<OpsListener> {
  const timeoutMs = options.readyTimeoutMs ?? 1_000;
  // Probes that arrive together share one check: a burst of them costs the store one ping.
  let checking: Promise<string | undefined> | undefined;
  const readiness = (): Promise<string | undefined> =>
    (checking ??= withTimeout(options.unready(), timeoutMs)
      .catch((err: unknown) => (err instanceof Error ? err.message : String(err)))
      .finally(() => (checking = undefined)));

  const answer = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'GET or HEAD\n', { Allow: 'GET, HEAD' });
    const url = req.url ?? '/';
    const path = url.includes('?') ? url.slice(0, url.indexOf('?')) : url;
    switch (path) {
      case '/metrics':
        return send(res, 200, await options.metrics.scrape(), { 'Content-Type': options.metrics.contentType });
      case '/livez':
        return send(res, 200, 'ok\n');
      case '/readyz': {
        const why = await readiness();
        return why === undefined ? send(res, 200, 'ready\n') : send(res, 503, `not ready: ${why}\n`);
      }
      default:
        return send(res, 404, 'not found: try /metrics, /livez or /readyz\n');
    }
  };

  // Short deadlines, checked often: a probe's request is one small GET, and a socket that sends
  // nothing is dropped within about 2.5 s (headersTimeout runs from the connection) instead of
  // node's default check every 30 s.
  const server = http.createServer({ headersTimeout: 2_000, requestTimeout: 5_000, keepAliveTimeout: 2_000, connectionsCheckingInterval: 500 }, (req, res) => {
    answer(req, res).catch((err: unknown) => {
      options.log.error({ err }, 'operations listener failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  const admission = new Admission({ maxConnections: MAX_CONNECTIONS, maxConnectionsPerAddress: MAX_CONNECTIONS_PER_ADDRESS });
  server.on('connection', (socket: Socket) => {
    if (admission.admit(socket)) socket.destroy();
  });
  const bound = await listenOn(server, options.port, options.host, MAX_CONNECTIONS, options.log, 'operations');
  options.log.info({ host: bound.address, port: bound.port }, 'operations listener: /metrics, /livez, /readyz');
  let closing: Promise<void> | undefined;
  return {
    address: { host: bound.address, port: bound.port },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

function send(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers, 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
