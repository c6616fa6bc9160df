/** `rotor serve`: a rotor server with the example application. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { resolveConfig, DEFAULTS } from '../../config/defaults.ts';
import { createLogger } from '../../log/index.ts';
import { serve } from '../../server/index.ts';
import { exampleApp } from '../../app/example.ts';
import { pooledRandom } from '../../session/random.ts';
import { KeyRing } from '../../session/token.ts';
import { openStore } from '../../store/index.ts';
import { checkTokenApiConfig, parseDuration } from '../../transport/rest.ts';
import { loadOrCreateKeys } from '../keys.ts';
import { openDataDirWarningFor, storeOptions } from '../options.ts';

export function serveCommand(y: Argv): Argv {
  return y
    .command(
      'serve',
      'run a rotor server (the example application, the embedded durable store)',
      (y) =>
        storeOptions(y)
          .option('host', { type: 'string', default: DEFAULTS.host, describe: 'address to listen on' })
          .option('port', { type: 'number', default: DEFAULTS.port, describe: 'TCP port for rotor frames' })
          .option('token-ttl', { type: 'number', default: DEFAULTS.session.tokenTtlMinutes, describe: 'token lifetime in minutes (-1 = never, needs --allow-never-expiring)' })
          .option('allow-never-expiring', { type: 'boolean', default: false })
          .option('token-lifetime', { type: 'string', describe: 'token lifetime as a duration (30min, 2h, …); overrides --token-ttl' })
          .option('purge-interval', { type: 'string', describe: 'how often expired sessions are purged (1s … 90min, default 1min)' })
          .option('http-port', { type: 'number', describe: 'also serve HTTP/1.1 on this port (rotor over HTTP, and WebSocket / the token API if enabled)' })
          .option('http-host', { type: 'string', describe: 'address for the HTTP listener (default: --host)' })
          .option('ws', { type: 'boolean', default: true, describe: 'with --http-port: accept WebSocket upgrades' })
          .option('ws-path', { type: 'string', default: '/rotor/ws', describe: 'the WebSocket upgrade path' })
          .option('token-api', { type: 'boolean', default: false, describe: "note 004's token server API (POST/PUT/DELETE /token) on --http-port, and metadata-only tokens without login on every carrier (trusted networks only)" })
          .option('dump', { type: 'boolean', default: false, describe: 'with --token-api: allow HEAD /dump (all metadata to the log)' })
          .option('key-file', {
            type: 'string',
            describe:
              'MAC keys (JSON, mode 0600); default <data>/keys.json. Keep it outside the data directory (a secrets mount, another disk) so that a copy of the data directory, a backup or a stolen disk, does not carry the keys that sign tokens',
          })
          .option('tls-cert', { type: 'string', describe: 'PEM certificate: serve TLS' })
          .option('tls-key', { type: 'string', describe: 'PEM private key for --tls-cert' })
          .option('max-connections', { type: 'number', default: DEFAULTS.connection.maxConnections, describe: 'connections open at once, per listener' })
          .option('max-connections-per-address', { type: 'number', default: DEFAULTS.connection.maxConnectionsPerAddress, describe: 'connections one client address (an IPv6 /64) may hold, per listener; behind a proxy, raise it to --max-connections' })
          .option('listen-backlog', { type: 'number', default: DEFAULTS.connection.listenBacklog, describe: 'listen(2) backlog of every listener (Linux caps it at net.core.somaxconn)' })
          .option('log-level', { type: 'string', default: 'info' }),
      async (args) => {
        if (args.dump && !args['token-api']) throw new Error('--dump goes with --token-api');
        // Given is given: `0s` or '' is checked like any other value, never taken for "unset".
        const tokenTtlMinutes = args['token-lifetime'] !== undefined ? wholeMinutes(parseDuration(args['token-lifetime'])) : args['token-ttl'];
        const purgeIntervalMs = args['purge-interval'] !== undefined ? parseDuration(args['purge-interval']) : undefined;
        const config = resolveConfig({
          host: args.host,
          port: args.port,
          logLevel: args['log-level'],
          connection: { maxConnections: args['max-connections'], maxConnectionsPerAddress: args['max-connections-per-address'], listenBacklog: args['listen-backlog'] },
          session: { tokenTtlMinutes, allowNeverExpiring: args['allow-never-expiring'], openTokenCreate: args['token-api'], ...(purgeIntervalMs !== undefined ? { purgeIntervalMs } : {}) },
        });
        if (args['token-api']) checkTokenApiConfig(config);
        const http =
          args['http-port'] === undefined
            ? undefined
            : {
                port: args['http-port'],
                host: args['http-host'],
                ws: args.ws ? { path: args['ws-path'] } : false,
                tokenApi: args['token-api'] ? { dump: args.dump } : false,
              };
        const log = createLogger({ level: config.logLevel });
        const random = pooledRandom();
        if ((args['tls-cert'] === undefined) !== (args['tls-key'] === undefined)) throw new Error('--tls-cert and --tls-key go together');
        const tls = args['tls-cert'] !== undefined ? { cert: readFileSync(args['tls-cert']), key: readFileSync(args['tls-key']!) } : undefined;
        const dataDirWarning = openDataDirWarningFor(args, args.store !== 'memory' && args['key-file'] === undefined);
        if (dataDirWarning) log.warn({ dataDir: args.data }, dataDirWarning);
        // A memory store forgets every session on exit, so a throwaway key is enough there.
        // Keys first: a key file others can read stops rotor before the store is opened.
        const keys = args.store === 'memory' && args['key-file'] === undefined ? KeyRing.generate(random) : loadOrCreateKeys(args['key-file'] ?? join(args.data, 'keys.json'), random);
        const store = await openStore(args.store, { dataDir: args.data, fsync: args.fsync });
        const server = await serve({ config, store, app: exampleApp(), keys, log, tls, random, http });
        const users = await store.listUsers();
        log.info({ address: server.tcp.address, http: server.http?.address, store: store.kind, tls: Boolean(tls), users: users.length }, 'rotor is listening');
        if (args['token-api'] && !http) log.warn('--token-api without --http-port: metadata-only tokens over rotor frames only, no REST API');
        if (users.length === 0) log.warn('no users yet: add one with `npm run rotor -- user add <name>`');
        const stop = async (signal: string) => {
          log.info({ signal }, 'shutting down');
          await server.close();
          await store.close();
          process.exit(0);
        };
        process.once('SIGTERM', () => void stop('SIGTERM'));
        process.once('SIGINT', () => void stop('SIGINT'));
      },
    );
}

function wholeMinutes(ms: number): number {
  if (ms % 60_000 !== 0) throw new Error('the token lifetime must be whole minutes');
  return ms / 60_000;
}
