/**
 * The `rotor` command: serve, manage users, and act as a client for scripts.
 * Every subcommand has --help.
 */
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { resolveConfig, DEFAULTS } from '../config/defaults.ts';
import { createLogger } from '../log/index.ts';
import { serve, hashPassword, newTotpSecret, totpFor } from '../server/index.ts';
import { exampleApp } from '../app/example.ts';
import { pooledRandom } from '../session/random.ts';
import { KeyRing } from '../session/token.ts';
import { openStore } from '../store/index.ts';
import { RotorClient, tcpConnect, RotorClientError, type RotorResponse } from '../client/index.ts';
import { checkTokenApiConfig, parseDuration } from '../transport/rest.ts';
import { BENCH_DEFAULTS, formatResult, runBench, SCENARIOS, type Scenario, type SpawnOptions } from '../bench/index.ts';
import { loadOrCreateKeys, openDataDirWarning } from './keys.ts';
import { PASSWORD_HELP, readPassword } from './password.ts';

const storeOptions = (y: Argv) =>
  y
    .option('store', { type: 'string', default: 'lmdb', describe: 'memory | lmdb (embedded, durable) | redis://host:port/db' })
    .option('data', { type: 'string', default: './rotor-data', describe: 'directory of the embedded store and the key file' })
    .option('fsync', { type: 'boolean', default: false, describe: 'embedded store: fsync every commit (safe against power loss, slower)' });

const clientOptions = (y: Argv) =>
  y
    .option('host', { type: 'string', default: DEFAULTS.host })
    .option('port', { type: 'number', default: DEFAULTS.port })
    .option('token-file', { type: 'string', describe: 'where the newest token is kept between calls' })
    .option('user', { type: 'string', describe: 'log in as this user (when there is no token file yet)' })
    .option('password', { type: 'string', describe: PASSWORD_HELP })
    .option('totp', { type: 'string', describe: 'TOTP code, for users that have one' })
    .option('timeout', { type: 'number', default: 10_000, describe: 'ms to wait for each response' });

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('rotor')
    .usage('$0 <command>\n\nA rotating-token session server. See README.md and spec.md.')
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
    )
    .command('user', 'manage users (add | list | remove)', (y) =>
      storeOptions(y)
        .command(
          'add <name>',
          'add a user, or replace its password',
          (yy) =>
            yy
              .positional('name', { type: 'string', demandOption: true })
              .option('password', { type: 'string', describe: PASSWORD_HELP })
              .option('totp', { type: 'boolean', default: false, describe: 'also require a TOTP code; prints the otpauth URI' }),
          async (args) => {
            // The server refuses longer names at login (400), so such a user could never log in.
            if (Buffer.byteLength(args.name) > DEFAULTS.auth.maxUserNameBytes) throw new Error(`a user name is at most ${DEFAULTS.auth.maxUserNameBytes} bytes`);
            const password = await readPassword(args.password);
            await withStore(args, async (store) => {
              const totpSecret = args.totp ? newTotpSecret() : undefined;
              const passwordHash = await hashPassword(password, DEFAULTS.auth, pooledRandom());
              await store.putUser({ name: args.name, passwordHash, totpSecret, createdAt: Date.now() });
              console.log(`user ${args.name} saved`);
              if (totpSecret) console.log(totpFor(totpSecret, args.name).toString());
            });
          },
        )
        .command('list', 'list users', {}, async (args) => {
          await withStore(args as unknown as StoreArgs, async (store) => {
            for (const user of await store.listUsers()) console.log(`${user.name}${user.totpSecret ? ' (totp)' : ''}`);
          });
        })
        .command(
          'remove <name>',
          'remove a user (their sessions run out on their own)',
          (yy) => yy.positional('name', { type: 'string', demandOption: true }),
          async (args) => {
            await withStore(args, async (store) => {
              if (!(await store.removeUser(args.name))) throw new Error(`no user ${args.name}`);
              console.log(`user ${args.name} removed`);
            });
          },
        )
        .demandCommand(1),
    )
    .command(
      'login',
      'log in and keep the token in --token-file',
      (y) => clientOptions(y).demandOption(['token-file', 'user']),
      async (args) => {
        const client = makeClient(args);
        await client.login(args.user!, await readPassword(args.password), { totp: args.totp });
        client.close();
      },
    )
    .command(
      'call <verb> <path>',
      'one request as a logged-in client (for scripts); prints the reply body',
      (y) =>
        clientOptions(y)
          .positional('verb', { type: 'string', demandOption: true })
          .positional('path', { type: 'string', demandOption: true })
          .option('data', { type: 'string', describe: 'request body' })
          .option('data-file', { type: 'string', describe: 'request body from a file' })
          .option('content-type', { type: 'string' })
          .option('wait', { type: 'boolean', default: false, describe: 'if work was deferred, ack and wait for its result' })
          .option('include', { alias: 'i', type: 'boolean', default: false, describe: 'print the status line and headers to stderr' }),
      async (args) => {
        const client = makeClient(args);
        const saved = args['token-file'] && existsSync(args['token-file']) ? readFileSync(args['token-file'], 'utf8').trim() : '';
        if (saved) await client.useToken(saved);
        else if (args.user) await client.login(args.user, await readPassword(args.password), { totp: args.totp });
        else throw new Error('no token: give --token-file with a token in it, or --user');
        const body = args['data-file'] !== undefined ? readFileSync(args['data-file']) : args.data;
        let response = await client.request(args.verb.toUpperCase(), args.path, { body, contentType: args['content-type'] });
        if (args.wait && response.tasks.length > 0) {
          for (const id of response.tasks) response = await client.waitForTask(id);
        }
        if (args.include) printHead(response);
        process.stdout.write(response.body);
        // The token file now holds the newest token; acking tells the server we have it, which
        // lets deferred work start. Without a token file the session ends here.
        if (args['token-file']) await client.ack();
        else await client.logout();
        client.close();
      },
    )
    .command(
      'bench',
      'load-test a rotor (loopback only): C connections × P requests in flight, for a duration or a count',
      (y) =>
        y
          .option('scenario', { choices: [...SCENARIOS], default: BENCH_DEFAULTS.scenario, describe: 'rotate = message + ack loop; meta = metadata exchange; tasks = deferred work; login = login storm; ping' })
          .option('carrier', { choices: ['tcp', 'tls', 'http', 'ws'], default: 'tcp' })
          .option('host', { type: 'string', default: '127.0.0.1', describe: 'a running server (loopback addresses only)' })
          .option('port', { type: 'number', default: DEFAULTS.port, describe: 'its port (the HTTP port for http and ws)' })
          .option('spawn', { choices: ['rotor', 'echo', 'http-echo'], describe: 'start this server in a child process instead of driving a running one' })
          .option('store', { type: 'string', default: 'memory', describe: 'with --spawn rotor: memory | lmdb | redis://…' })
          .option('preload', { type: 'number', default: 0, describe: 'with --spawn: idle sessions stored before the run' })
          .option('server-cpu', { type: 'number', describe: 'with --spawn: pin the server to this CPU (taskset)' })
          .option('cpu', { type: 'number', describe: 'pin the load generator to this CPU (taskset)' })
          .option('connections', { alias: 'c', type: 'number', default: BENCH_DEFAULTS.connections })
          .option('pipeline', { alias: 'p', type: 'number', default: BENCH_DEFAULTS.pipeline, describe: 'requests in flight per connection (one session each)' })
          .option('duration', { type: 'number', default: BENCH_DEFAULTS.durationMs, describe: 'measured ms' })
          .option('warmup', { type: 'number', default: BENCH_DEFAULTS.warmupMs, describe: 'ms before measuring' })
          .option('count', { type: 'number', describe: 'stop after this many measured requests' })
          .option('user', { type: 'string', default: BENCH_DEFAULTS.user })
          .option('password', { type: 'string', default: BENCH_DEFAULTS.password })
          .option('timeout', { type: 'number', default: BENCH_DEFAULTS.timeoutMs, describe: 'ms to wait for one response' })
          .option('json', { type: 'boolean', default: false, describe: 'print the result as JSON' })
          .option('progress', { type: 'boolean', describe: 'a progress line on stderr (default: when stderr is a terminal)' }),
      async (args) => {
        const result = await runBench({
          scenario: args.scenario as Scenario,
          carrier: args.carrier,
          host: args.host,
          port: args.port,
          spawn: args.spawn ? { server: args.spawn as SpawnOptions['server'], store: args.store, preload: args.preload, cpu: args['server-cpu'], http: args.carrier === 'http' || args.carrier === 'ws' } : undefined,
          connections: args.connections,
          pipeline: args.pipeline,
          durationMs: args.duration,
          warmupMs: args.warmup,
          count: args.count,
          user: args.user,
          password: args.password,
          timeoutMs: args.timeout,
          progress: args.progress,
          cpu: args.cpu,
        });
        console.log(args.json ? JSON.stringify(result) : formatResult(result));
      },
    )
    .command(
      'logout',
      'end the session in --token-file',
      (y) => clientOptions(y).demandOption('token-file'),
      async (args) => {
        const client = makeClient(args);
        await client.useToken(readFileSync(args['token-file']!, 'utf8').trim());
        await client.logout();
        client.close();
      },
    )
    .demandCommand(1)
    .strict()
    .help()
    .fail((message, err, y) => {
      if (err) {
        const code = err instanceof RotorClientError ? ` (${err.code})` : '';
        console.error(`rotor: ${err.message}${code}`);
      } else {
        console.error(y.help().toString());
        console.error(`\nrotor: ${message}`);
      }
      process.exit(1);
    })
    .parseAsync();
}

type StoreArgs = { store: string; data: string; fsync: boolean };

async function withStore(args: StoreArgs, work: (store: Awaited<ReturnType<typeof openStore>>) => Promise<void>): Promise<void> {
  if (args.store === 'memory') throw new Error('users of a memory store live only inside its server; use the default embedded store or redis');
  const warning = openDataDirWarningFor(args, false);
  if (warning) console.error(`rotor: warning: ${warning}`);
  const store = await openStore(args.store, { dataDir: args.data, fsync: args.fsync });
  try {
    await work(store);
  } finally {
    await store.close();
  }
}

type ClientArgs = { host: string; port: number; 'token-file'?: string; timeout: number };

function makeClient(args: ClientArgs): RotorClient {
  const file = args['token-file'];
  return new RotorClient({
    connect: tcpConnect({ host: args.host, port: args.port, timeoutMs: args.timeout }),
    // Written atomically before the token is ever used or acked: a crash leaves the old or the new token, never half of one.
    onToken: file
      ? (token) => {
          writeFileSync(`${file}.tmp`, token ? `${token}\n` : '', { mode: 0o600 });
          renameSync(`${file}.tmp`, file);
        }
      : undefined,
  });
}

/** The data directory's warning, if rotor uses it: for the embedded store, or for keys kept in it. */
function openDataDirWarningFor(args: StoreArgs, keysInDataDir: boolean): string | undefined {
  const embedded = args.store === 'lmdb' || args.store === '';
  return embedded || keysInDataDir ? openDataDirWarning(args.data) : undefined;
}

function printHead(response: RotorResponse): void {
  const lines = [`${response.status}`, ...response.headers.filter(([name]) => name.toLowerCase() !== 'token').map(([n, v]) => `${n}: ${v}`)];
  process.stderr.write(lines.join('\n') + '\n\n');
}

function wholeMinutes(ms: number): number {
  if (ms % 60_000 !== 0) throw new Error('the token lifetime must be whole minutes');
  return ms / 60_000;
}

await main();
