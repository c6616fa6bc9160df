/**
 * `rotor token-server`: a drop-in for HaKr/token_server (note 004). It takes the original's
 * flags as they are — `-p/--port` (default 3666), `-d/--dump`, `-P/--purge-interval` (1s–90min,
 * default 1min), `-t/--token-lifetime` (30min–96h, default 2h) — and serves only the REST API
 * over HTTP (docs/rest.md): no rotor TCP listener, no application, no rotor-over-HTTP paths.
 * Replacing the original is changing the command that starts it.
 *
 * Like the original it listens on 127.0.0.1 and keeps its tokens in memory; `--host` and
 * `--store` (lmdb, redis) are rotor's additions.
 */
import type { Argv } from 'yargs';
import { ConfigError, parseDuration, resolveConfig } from '../../config/index.ts';
import { openKeyRingSource } from '../../keys/source.ts';
import { createLogger } from '../../log/index.ts';
import { Rotor } from '../../server/index.ts';
import { pooledRandom } from '../../session/random.ts';
import { openStore } from '../../store/index.ts';
import { listenHttp } from '../../transport/http.ts';
import { TokenApi, TOKEN_API_RANGES } from '../../transport/rest.ts';
import { errorReply } from '../../wire/index.ts';
import { DATA_OPTION, serverKeys } from '../options.ts';
import { stopOnSignals } from './serve.ts';

const ORIGINAL_OPTIONS = "HaKr/token_server's options:";

/** Every request that is not the token API's: the HTTP listener hands rotor frames here, and none is served. */
const NOTHING_BUT_THE_TOKEN_API = { dispatch: async () => errorReply('ROTOR_E_NOT_FOUND') };

export function tokenServerCommand(y: Argv): Argv {
  return y.command(
    'token-server',
    "note 004's token server: its REST API only (POST/PUT/DELETE /token, HEAD /dump) over HTTP, with the original's flags",
    (y) =>
      y
        .option('port', { alias: 'p', type: 'number', default: 3666, describe: 'Which port to listen on' })
        .option('dump', { alias: 'd', type: 'boolean', default: false, describe: 'allow for HEAD /dump endpoint to log all metadata' })
        .option('purge-interval', { alias: 'P', type: 'string', default: '1min', describe: 'What frequency to remove expired tokens, between 1s and 90min' })
        .option('token-lifetime', { alias: 't', type: 'string', default: '2h', describe: 'How long does a token remain valid, between 30min and 96h' })
        .group(['port', 'dump', 'purge-interval', 'token-lifetime'], ORIGINAL_OPTIONS)
        .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on (the original: 127.0.0.1 only; 0.0.0.0 in a container)' })
        .option('store', { type: 'string', default: 'memory', describe: 'memory (as the original: tokens end with the process) | lmdb (embedded, durable, in --data) | redis://host:port/db | redis-cluster://host:port,host:port,…' })
        .option('data', DATA_OPTION)
        .option('key-file', { type: 'string', describe: "with a durable store: the wrapping key of the store's MAC key ring (JSON, mode 0600); default <data>/keys.json" })
        .option('log-level', { type: 'string', default: 'info' }),
    async (args) => {
      const port = args.port;
      if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new ConfigError(`--port must be a port number (0–65535), got ${port}`);
      const tokenLifetimeMs = inRange('--token-lifetime', args['token-lifetime'], TOKEN_API_RANGES.tokenTtlMinutes.map((minutes) => minutes * 60_000), '30min', '96h');
      if (tokenLifetimeMs % 60_000 !== 0) throw new ConfigError(`--token-lifetime must be whole minutes, got ${args['token-lifetime']}`);
      const purgeIntervalMs = inRange('--purge-interval', args['purge-interval'], TOKEN_API_RANGES.purgeIntervalMs, '1s', '90min');
      const config = resolveConfig({
        host: args.host,
        logLevel: args['log-level'],
        session: { tokenTtlMinutes: tokenLifetimeMs / 60_000, purgeIntervalMs, openTokenCreate: true },
      });
      const log = createLogger({ level: config.logLevel });
      const random = pooledRandom();
      const material = serverKeys(args, random);
      const store = await openStore(args.store, { dataDir: args.data });
      const keys = await openKeyRingSource(store, material, { config, log, random }).catch(async (err: unknown) => {
        await store.close();
        throw err;
      });
      const rotor = new Rotor({ config, store, app: { routes: {}, tasks: {} }, keys: keys.ring, log, random });
      rotor.start();
      const tokenApi = new TokenApi(rotor, store, log, { dump: args.dump });
      const http = await listenHttp(NOTHING_BUT_THE_TOKEN_API, config, log, { host: args.host, port, tokenApi }).catch(async (err: unknown) => {
        await rotor.stop();
        await store.close();
        throw err;
      });
      keys.start();
      log.info(
        { address: http.address, store: store.kind, tokenLifetime: args['token-lifetime'], purgeInterval: args['purge-interval'], dump: args.dump },
        `Token server listening: Port: ${http.address.port}, Token lifetime: ${args['token-lifetime']}, Purge cycle: ${args['purge-interval']}, HEAD /dump endpoint ${args.dump ? 'enabled' : 'disabled'}`,
      );
      stopOnSignals(
        async () => {
          await http.close();
          keys.stop();
          await rotor.stop();
          await store.close();
        },
        log,
        undefined,
      );
    },
  );
}

/** A duration flag in milliseconds, held to the original's range (written as the original's help writes it). */
function inRange(flag: string, text: string, [min, max]: readonly number[], minText: string, maxText: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new ConfigError(`${flag}: ${(err as Error).message}`);
  }
  if (ms < min || ms > max) throw new ConfigError(`${flag} must be between ${minText} and ${maxText}, got ${text}`);
  return ms;
}
