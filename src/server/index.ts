/** The server's public face: assemble a rotor from a config, a store and an application. */
import { resolveConfig, type DeepPartial, type RotorConfig } from '../config/defaults.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { KeyRing } from '../session/token.ts';
import { pooledRandom, type RandomSource } from '../session/random.ts';
import type { Store } from '../store/types.ts';
import { listenStream, type Listener } from '../transport/tcp.ts';
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
  tls?: { key: string | Buffer; cert: string | Buffer };
  now?: () => number;
  random?: RandomSource;
}

export interface RunningServer {
  rotor: Rotor;
  tcp: Listener;
  /** Stop accepting, finish in-flight work, stop the task runner. The store stays open. */
  close(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<RunningServer> {
  const config = resolveConfig(options.config);
  const log = options.log ?? createLogger({ level: config.logLevel });
  const random = options.random ?? pooledRandom();
  const keys = options.keys ?? KeyRing.generate(random);
  const rotor = new Rotor({ config, store: options.store, app: options.app, keys, log, now: options.now, random });
  rotor.start();
  const tcp = await listenStream(rotor, config, log, { host: config.host, port: config.port, tls: options.tls });
  let closing: Promise<void> | undefined;
  return {
    rotor,
    tcp,
    close: () =>
      (closing ??= (async () => {
        await tcp.close();
        await rotor.stop();
      })()),
  };
}
