/** The server's public face: assemble a rotor from a config, a store and an application. */
import { resolveConfig, type DeepPartial, type RotorConfig } from '../config/defaults.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { KeyRing } from '../session/token.ts';
import { pooledRandom, type RandomSource } from '../session/random.ts';
import type { Store } from '../store/types.ts';
import { listenStream, type Listener } from '../transport/tcp.ts';
import { listenHttp, type HttpListener } from '../transport/http.ts';
import { checkTokenApiConfig, TokenApi } from '../transport/rest.ts';
import type { RotorApp } from './app.ts';
import { Rotor } from './rotor.ts';

export { Rotor, SERVER_NAME, errorReply, type Reply } from './rotor.ts';
export type { RotorApp, Handler, TaskHandler, AppRequest, AppReply } from './app.ts';
export { hashPassword, newTotpSecret, totpFor } from './auth.ts';

export interface ServeOptions {
  config?: DeepPartial<RotorConfig>;
  store: Store;
  app: RotorApp;
  keys?: KeyRing;
  log?: Logger;
  /** PEM key and certificate for every listener: TCP becomes TLS, HTTP becomes HTTPS, WebSocket WSS. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Also listen for HTTP (src/transport/http.ts); WebSocket and the token API ride on the same port. */
  http?: HttpServeOptions;
  now?: () => number;
  random?: RandomSource;
}

export interface HttpServeOptions {
  port: number;
  /** Default: config.host. */
  host?: string;
  /** Accept WebSocket upgrades, at `path` (default /rotor/ws). */
  ws?: boolean | { path?: string };
  /**
   * Serve note 004's token API on /token and /dump. Turns session.openTokenCreate on (unless the
   * config turns it off explicitly, which is then an error) and holds the token lifetime and purge
   * interval to the note's ranges. `dump` enables HEAD /dump.
   */
  tokenApi?: boolean | { dump?: boolean };
}

export interface RunningServer {
  rotor: Rotor;
  tcp: Listener;
  /** Present when `http` was asked for. */
  http?: HttpListener;
  /** Stop accepting, finish in-flight work, stop the task runner. The store stays open. */
  close(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<RunningServer> {
  const tokenApi = options.http?.tokenApi;
  const override = tokenApi ? { ...options.config, session: { openTokenCreate: true, ...options.config?.session } } : options.config;
  const config = resolveConfig(override);
  if (tokenApi) checkTokenApiConfig(config);
  const log = options.log ?? createLogger({ level: config.logLevel });
  const random = options.random ?? pooledRandom();
  const keys = options.keys ?? KeyRing.generate(random);
  const rotor = new Rotor({ config, store: options.store, app: options.app, keys, log, now: options.now, random });
  rotor.start();
  let tcp: Listener | undefined;
  let http: HttpListener | undefined;
  try {
    tcp = await listenStream(rotor, config, log, { host: config.host, port: config.port, tls: options.tls });
    if (options.http) {
      const ws = options.http.ws;
      http = await listenHttp(rotor, config, log, {
        host: options.http.host ?? config.host,
        port: options.http.port,
        tls: options.tls,
        ws: Boolean(ws),
        wsPath: typeof ws === 'object' ? ws.path : undefined,
        tokenApi: tokenApi
          ? new TokenApi(rotor, options.store, log, { dump: typeof tokenApi === 'object' && tokenApi.dump === true, now: options.now })
          : undefined,
      });
    }
  } catch (err) {
    await tcp?.close();
    await rotor.stop();
    throw err;
  }
  const listeners = [tcp, http];
  let closing: Promise<void> | undefined;
  return {
    rotor,
    tcp,
    http,
    close: () =>
      (closing ??= (async () => {
        await Promise.all(listeners.map((listener) => listener?.close()));
        await rotor.stop();
      })()),
  };
}
