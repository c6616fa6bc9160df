/** The server's public face: assemble a rotor from a config, a store and an application. */
import type { HandOver } from '../handover/index.ts';
import { resolveConfig, type DeepPartial, type RotorConfig } from '../config/defaults.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { listenOps, Metrics, timedStore, type OpsListener } from '../metrics/index.ts';
import type { KeyMaterial } from '../keys/file.ts';
import { openKeyRingSource, type KeyRingSource } from '../keys/source.ts';
import type { KeyRing } from '../session/token.ts';
import { pooledRandom, type RandomSource } from '../session/random.ts';
import type { Store } from '../store/types.ts';
import { fromOrigin, type ListenerHooks } from '../transport/admission.ts';
import { listenStream, type Listener } from '../transport/tcp.ts';
import { listenHttp, type HttpListener } from '../transport/http.ts';
import { checkTokenApiConfig, TokenApi } from '../transport/rest.ts';
import type { RotorApp } from './app.ts';
import { Rotor } from './rotor.ts';

export { Rotor, SERVER_NAME, errorReply, type Reply } from './rotor.ts';
export type { RotorApp, Handler, TaskHandler, AppRequest, AppReply } from './app.ts';
export { hashPassword, newTotpSecret, totpFor } from './auth.ts';

export interface ServeOptions {
  config?: DeepPartial<RotorConfig> | undefined;
  store: Store;
  app: RotorApp;
  /**
   * The MAC keys (spec §11). A key file's material (`loadOrCreateKeyFile(path, random)`,
   * `readKeyFile(path)`, or `{ wrap, seed: [] }` with 32 secret bytes of your own): the ring lives
   * in the store, wrapped, rotates (config.keys) and is shared by every node on it. A KeyRing: these
   * keys, fixed, for this server only. None: a ring in this process only, lost at exit, every
   * session with it — refused on a durable store unless `ephemeralKeys` says so.
   */
  keys?: KeyRing | KeyMaterial | undefined;
  /** Without `keys` on a durable store: start anyway, with keys that die with the process (every session then ends at the next start). */
  ephemeralKeys?: boolean | undefined;
  log?: Logger | undefined;
  /** PEM key and certificate for every listener: TCP becomes TLS, HTTP becomes HTTPS, WebSocket WSS. */
  tls?: { key: string | Buffer; cert: string | Buffer } | undefined;
  /** Also listen for HTTP (src/transport/http.ts); WebSocket and the token API ride on the same port. */
  http?: HttpServeOptions | undefined;
  /** Hand-over to and from peers (spec §11, src/handover/); its revocation list is served on the HTTP listener. */
  handOver?: HandOver | undefined;
  now?: (() => number) | undefined;
  random?: RandomSource | undefined;
  /**
   * The operations listener (/metrics, /livez, /readyz: src/metrics/ops.ts). Default: on at
   * config.observability.metricsHost:metricsPort unless that port is 0.
   */
  ops?: OpsServeOptions | undefined;
}

export interface OpsServeOptions {
  /** 0: any free port (tests). */
  port: number;
  /** Default: config.observability.metricsHost. */
  host?: string | undefined;
}

export interface HttpServeOptions {
  port: number;
  /** Default: config.host. */
  host?: string | undefined;
  /** Accept WebSocket upgrades, at `path` (default /rotor/ws). */
  ws?: boolean | { path?: string } | undefined;
  /**
   * Serve note 004's token API on /token and /dump. Turns session.openTokenCreate on (unless the
   * config turns it off explicitly, which is then an error) and holds the token lifetime and purge
   * interval to the note's ranges. `dump` enables HEAD /dump.
   */
  tokenApi?: boolean | { dump?: boolean } | undefined;
}

export interface RunningServer {
  rotor: Rotor;
  tcp: Listener;
  /** Present when `http` was asked for. */
  http?: HttpListener;
  /** Present when the operations listener is on. */
  ops?: OpsListener | undefined;
  /** This server's metrics (what /metrics shows), there with or without the operations listener. */
  metrics: Metrics;
  /** Where the keys come from and go back to, unless a fixed KeyRing was given. */
  keySource: KeyRingSource | undefined;
  /**
   * Stop accepting, finish in-flight work, stop the task runner; /readyz says 503 from the start
   * of it, and the operations listener closes last. The store stays open.
   */
  close(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<RunningServer> {
  const tokenApi = options.http?.tokenApi;
  const override = tokenApi ? { ...options.config, session: { openTokenCreate: true, ...options.config?.session } } : options.config;
  const config = resolveConfig(override);
  if (tokenApi) checkTokenApiConfig(config);
  const log = options.log ?? createLogger({ level: config.logLevel, pretty: config.observability.prettyLogs });
  const random = options.random ?? pooledRandom();
  const metrics = new Metrics();
  const store = timedStore(options.store, metrics);
  const fixed = options.keys !== undefined && !('wrap' in options.keys) ? options.keys : undefined;
  const keySource = fixed ? undefined : await openKeys(options, store, config, log, random);
  const keys = fixed ?? keySource!.ring;
  const rotor = new Rotor({ config, store, app: options.app, keys, log, now: options.now, random, metrics, handOver: options.handOver });
  rotor.start();
  const stopWatchingLoop = metrics.watchEventLoop();
  const hooks: ListenerHooks = {
    refused: (code, origin) => {
      metrics.connectionRefused(origin.carrier, code);
      if (code === 'ROTOR_E_TOO_MANY_CONNECTIONS') rotor.security.report('connection_refused', { carrier: origin.carrier, peer: origin.peer });
    },
  };
  let phase: 'starting' | 'serving' | 'shutting down' = 'starting';
  const unready = async (): Promise<string | undefined> => {
    if (phase !== 'serving') return phase;
    try {
      await store.ping?.();
      return undefined;
    } catch (err) {
      return `the ${store.kind} store does not answer (${err instanceof Error ? err.message : String(err)})`;
    }
  };
  const { metricsPort, metricsHost } = config.observability;
  const opsAt = options.ops ?? (metricsPort > 0 ? { port: metricsPort } : undefined);
  let ops: OpsListener | undefined;
  let tcp: Listener | undefined;
  let http: HttpListener | undefined;
  try {
    // First, so that probes get an answer (503, starting) while the rest binds.
    if (opsAt) ops = await listenOps({ host: opsAt.host ?? metricsHost, port: opsAt.port, metrics, unready, log });
    tcp = await listenStream(rotor, config, log, { host: config.host, port: config.port, tls: options.tls, hooks });
    if (options.http) {
      const ws = options.http.ws;
      http = await listenHttp(rotor, config, log, {
        host: options.http.host ?? config.host,
        port: options.http.port,
        tls: options.tls,
        ws: Boolean(ws),
        wsPath: typeof ws === 'object' ? ws.path : undefined,
        tokenApi: tokenApi
          ? new TokenApi(fromOrigin(rotor, { carrier: 'http', peer: undefined }), store, log, { dump: typeof tokenApi === 'object' && tokenApi.dump === true, now: options.now })
          : undefined,
        hooks,
      });
    }
  } catch (err) {
    await tcp?.close();
    await ops?.close();
    await rotor.stop();
    stopWatchingLoop();
    throw err;
  }
  keySource?.start();
  const streams = tcp;
  const web = http;
  metrics.countConnections(() => ({
    [options.tls ? 'tls' : 'tcp']: streams.connections,
    http: web ? web.connections - web.webSockets : 0,
    ws: web?.webSockets ?? 0,
  }));
  phase = 'serving';
  const listeners = [tcp, http];
  let closing: Promise<void> | undefined;
  return {
    rotor,
    tcp,
    http,
    ops,
    metrics,
    keySource,
    close: () =>
      (closing ??= (async () => {
        phase = 'shutting down';
        keySource?.stop();
        await Promise.all(listeners.map((listener) => listener?.close()));
        await rotor.stop();
        rotor.security.flush();
        stopWatchingLoop();
        await ops?.close();
      })()),
  };
}

/**
 * The key ring source of a server not given a fixed KeyRing: the store's ring with a key file's
 * material; without one, a ring of this process only — refused on a durable store unless
 * ephemeralKeys, warned about on the memory store. Throws before anything listens, as when the
 * wrapping key does not unwrap the store's ring (KeyRingError).
 */
async function openKeys(options: ServeOptions, store: Store, config: RotorConfig, log: Logger, random: RandomSource): Promise<KeyRingSource> {
  const material = options.keys as KeyMaterial | undefined;
  if (!material && !options.ephemeralKeys) {
    if (store.kind !== 'memory') {
      throw new Error(
        `serve() without keys on the ${store.kind} store: its MAC keys would die with this process, and every session stored with them at the next start. ` +
          'Give keys: loadOrCreateKeyFile(path, random) (a key file; its ring then lives in the store) or a KeyRing — or ephemeralKeys: true to accept that',
      );
    }
    log.warn('serve() without keys: the MAC keys live in this process only, and a restart signs every client out (fine for a memory store, which forgets its sessions too)');
  }
  return openKeyRingSource(store, material, { config, log, now: options.now, random });
}
