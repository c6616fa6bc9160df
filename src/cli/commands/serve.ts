/** `rotor serve`: a rotor server with the example application. */
import { join } from 'node:path';
import { HandOver, loadOrCreateHandOverKeys, loadPeers } from '../../handover/index.ts';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import type { Argv } from 'yargs';
import { ConfigError, DEFAULTS, durationIn, flagName, loadConfig, settingAt, SETTINGS, settingHelp, type FlagSetting, type RotorConfig, type Setting } from '../../config/index.ts';
import { createLogger, type Logger } from '../../log/index.ts';
import { serve } from '../../server/index.ts';
import { addUser } from '../../server/users.ts';
import { exampleApp } from '../../app/example.ts';
import { pooledRandom } from '../../session/random.ts';
import { openStore } from '../../store/index.ts';
import { checkTokenApiConfig } from '../../transport/rest.ts';
import { openDataDirWarningFor, serverKeys, storeOptions } from '../options.ts';
import { readPassword } from '../password.ts';

/**
 * Flags rotor serve had before every setting got one of its own; each still sets its setting,
 * as it did. `duration`: the value must be a duration (`2h`), as note 004's options are.
 */
const SHORT_FLAGS: ReadonlyArray<{ flag: string; path: string; duration?: boolean; boolean?: boolean; describe: string }> = [
  { flag: 'token-ttl', path: 'session.tokenTtlMinutes', describe: 'token lifetime in minutes, or a duration (-1 = never, needs --allow-never-expiring)' },
  { flag: 'token-lifetime', path: 'session.tokenTtlMinutes', duration: true, describe: 'token lifetime as a duration (30min, 2h, …)' },
  { flag: 'allow-never-expiring', path: 'session.allowNeverExpiring', boolean: true, describe: 'allow --token-ttl -1' },
  { flag: 'purge-interval', path: 'session.purgeIntervalMs', duration: true, describe: 'how often expired sessions are purged (1s … 90min, default 1min)' },
  { flag: 'max-connections', path: 'connection.maxConnections', describe: 'connections open at once, per listener' },
  {
    flag: 'max-connections-per-address',
    path: 'connection.maxConnectionsPerAddress',
    describe: 'connections one client address (an IPv6 /64) may hold, per listener; behind a proxy, raise it to --max-connections',
  },
  { flag: 'listen-backlog', path: 'connection.listenBacklog', describe: 'listen(2) backlog of every listener (Linux caps it at net.core.somaxconn)' },
  { flag: 'key-rotation', path: 'keys.rotationHours', duration: true, describe: 'rotate the MAC keys this often (24h, 7d; 0h = off): the signing key gets a successor, known to every node before it signs' },
];

const SETTINGS_GROUP = 'Settings (each also from the --config file and a ROTOR_* variable; flags win, then env, then the file):';

/** Every flag of rotor serve; `rotor config print` takes the same. */
export function serveOptions(y: Argv) {
  const withSettings = SETTINGS.reduce(
    (y, setting) =>
      y.option(flagName(setting), {
        type: setting.field.kind === 'boolean' ? 'boolean' : 'string',
        describe: settingHelp(setting),
        defaultDescription: String(valueAt(DEFAULTS, setting.path)),
      }),
    storeOptions(y).option('config', { type: 'string', describe: 'a JSON file of settings ({"connection": {"maxInFlight": 32}, …}; README "Configuration")' }),
  );
  return SHORT_FLAGS.reduce(
    (y, short) => y.option(short.flag, { type: short.boolean ? 'boolean' : 'string', describe: `${short.describe} (= --${flagName(settingAt(short.path))})` }),
    withSettings,
  )
    .group(['store', 'data', 'fsync', 'config', 'user', 'http-port', 'http-host', 'ws', 'ws-path', 'token-api', 'dump', 'key-file', 'peers', 'hand-over-keys', 'tls-cert', 'tls-key', 'exit-with-parent'], 'Server:')
    .group(SHORT_FLAGS.map((short) => short.flag), 'Short forms of settings:')
    .group(SETTINGS.map(flagName), SETTINGS_GROUP)
    .option('user', { type: 'string', describe: 'with --store memory: add this user at start; its password is asked for (or ROTOR_PASSWORD, or one line on stdin)' })
    .option('http-port', { type: 'number', describe: 'also serve HTTP/1.1 on this port (rotor over HTTP, and WebSocket / the token API if enabled)' })
    .option('http-host', { type: 'string', describe: 'address for the HTTP listener (default: --host)' })
    .option('ws', { type: 'boolean', default: true, describe: 'with --http-port: accept WebSocket upgrades' })
    .option('ws-path', { type: 'string', default: '/rotor/ws', describe: 'the WebSocket upgrade path' })
    .option('token-api', { type: 'boolean', default: false, describe: "note 004's token server API (POST/PUT/DELETE /token) on --http-port, and metadata-only tokens without login on every carrier (trusted networks only)" })
    .option('dump', { type: 'boolean', default: false, describe: 'with --token-api: allow HEAD /dump (all metadata to the log)' })
    .option('key-file', {
      type: 'string',
      describe:
        'the wrapping key of the MAC key ring kept in the store (JSON, mode 0600, made when missing; 0.1 key files are read as they are); default <data>/keys.json. Every node on one store needs the same. Keep it outside the data directory (a secrets mount, another disk) so that a copy of the data directory, a backup or a stolen disk, does not carry what unwraps the keys that sign tokens',
    })
    .option('peers', { type: 'string', describe: 'hand clients over to peer servers and take them from peers (spec §11): a JSON file {"self", "peers": [{"name", "address", "publicKeys", "revocations"}]}' })
    .option('hand-over-keys', { type: 'string', describe: "with --peers: this server's Ed25519 hand-over keys (JSON, mode 0600, made when missing); default <data>/handover-keys.json" })
    .option('tls-cert', { type: 'string', describe: 'PEM certificate: serve TLS' })
    .option('tls-key', { type: 'string', describe: 'PEM private key for --tls-cert' })
    .option('exit-with-parent', {
      type: 'boolean',
      // On under npm (npm start, npm run), whose child rotor is: npm killed outright leaves it
      // orphaned. Off otherwise, so `nohup rotor serve &` outlives the shell that started it.
      default: process.env.npm_lifecycle_event !== undefined,
      defaultDescription: 'on when started by npm',
      describe: 'stop as on SIGTERM when the process that started rotor exits (a wrapper killed without passing the signal on); --no-exit-with-parent to outlive it',
    });
}

type ServeArgs = Awaited<ReturnType<typeof serveOptions>['argv']>;

/** The config rotor serve runs with: DEFAULTS < --config file < ROTOR_* env < flags. Throws ConfigError. */
export function configFromArgs(args: ServeArgs, env: NodeJS.ProcessEnv = process.env): RotorConfig {
  const given = args as Record<string, unknown>;
  const flags: FlagSetting[] = [];
  for (const setting of SETTINGS) {
    const flag = flagName(setting);
    if (given[flag] !== undefined) flags.push({ flag, path: setting.path, value: given[flag] });
  }
  for (const short of SHORT_FLAGS) {
    const value = given[short.flag];
    if (value === undefined) continue;
    flags.push({ flag: short.flag, path: short.path, value: short.duration ? durationFlag(short.flag, value, settingAt(short.path)) : value });
  }
  if (args['token-api']) flags.push({ flag: 'token-api', path: 'session.openTokenCreate', value: true });
  const config = loadConfig({ file: args.config, env, flags });
  if (args['token-api']) checkTokenApiConfig(config);
  return config;
}

export function serveCommand(y: Argv): Argv {
  return y.command(
    'serve',
    'run a rotor server (the example application, the embedded durable store)',
    serveOptions,
    async (args) => {
      if (args.dump && !args['token-api']) throw new Error('--dump goes with --token-api');
      const config = configFromArgs(args);
      if (args.user !== undefined && args.store !== 'memory') throw new ConfigError('--user is for --store memory; add users of a durable store with `rotor user add <name>`');
      // Before the server says anything: the prompt is the one thing on the terminal.
      const password = args.user !== undefined ? await readPassword(undefined) : undefined;
      const http =
        args['http-port'] === undefined
          ? undefined
          : {
              port: args['http-port'],
              host: args['http-host'],
              ws: args.ws ? { path: args['ws-path'] } : false,
              tokenApi: args['token-api'] ? { dump: args.dump } : false,
            };
      const log = createLogger({ level: config.logLevel, pretty: config.observability.prettyLogs });
      const random = pooledRandom();
      if ((args['tls-cert'] === undefined) !== (args['tls-key'] === undefined)) throw new Error('--tls-cert and --tls-key go together');
      const tls = args['tls-cert'] !== undefined ? { cert: readFileSync(args['tls-cert']), key: readFileSync(args['tls-key']!) } : undefined;
      const dataDirWarning = openDataDirWarningFor(args, args.store !== 'memory' && args['key-file'] === undefined);
      if (dataDirWarning) log.warn({ dataDir: args.data }, dataDirWarning);
      // Keys first: a key file others can read stops rotor before the store is opened.
      const keys = serverKeys(args, random);
      const store = await openStore(args.store, { dataDir: args.data, fsync: args.fsync });
      if (args.user !== undefined) await addUser(store, args.user, password!, { auth: config.auth, random });
      // A memory store forgets every session on exit: keys of this process only are enough there.
      if (args['hand-over-keys'] !== undefined && args.peers === undefined) throw new Error('--hand-over-keys goes with --peers');
      const handOver =
        args.peers === undefined
          ? undefined
          : (() => {
              const keyFile = args['hand-over-keys'] ?? join(args.data, 'handover-keys.json');
              // keyFile: a key added or promoted with `rotor keys --hand-over` is taken without a restart.
              return new HandOver({ peers: loadPeers(args.peers), keys: loadOrCreateHandOverKeys(keyFile), keyFile, pullSeconds: config.peers.pullSeconds });
            })();
      if (handOver && !http) log.warn('--peers without --http-port: this server\'s revocation list is served on the HTTP listener only, so peers cannot learn when a parent session ends here');
      const server = await serve({ config, store, app: exampleApp(), keys, ephemeralKeys: keys === undefined, log, tls, random, http, handOver }).catch(async (err: unknown) => {
        await store.close();
        throw err;
      });
      const users = await store.listUsers();
      log.info({ address: server.tcp.address, http: server.http?.address, store: store.kind, tls: Boolean(tls), users: users.length }, 'rotor is listening');
      if (args['token-api'] && !http) log.warn('--token-api without --http-port: metadata-only tokens over rotor frames only, no REST API');
      if (users.length === 0) {
        log.warn(
          store.kind === 'memory'
            ? 'no users yet: a memory store starts empty every time; start it with `--user <name>` to add one (its password is asked for)'
            : 'no users yet: add one with `npm run rotor -- user add <name>`',
        );
      }
      stopOnSignals(
        async () => {
          await server.close();
          await store.close();
        },
        log,
        args['exit-with-parent'] ? config.connection.sweepIntervalMs : undefined,
      );
    },
  );
}

/** Who started rotor, read as early as can be: a parent gone during start-up is still noticed. */
const PARENT = process.ppid;

/**
 * SIGTERM or SIGINT: stop accepting, let in-flight work finish (connection.shutdownGraceMs),
 * close the store, exit 0. A second signal exits at once, 128 + its number.
 *
 * With `watchParentEveryMs`, also stop so when the process that started rotor has gone: a
 * wrapper killed without passing the signal on (a shell script, `npm start` through `sh -c`
 * without exec, a supervisor SIGKILLed) leaves rotor reparented, listening on with nobody left
 * to stop it. Node has no event for that (prctl's PDEATHSIG is out of reach), so the parent's pid
 * is checked this often: it changes when rotor is reparented.
 */
export function stopOnSignals(stop: () => Promise<void>, log: Logger, watchParentEveryMs: number | undefined): void {
  let stopping = false;
  const watch = watchParentEveryMs === undefined ? undefined : setInterval(() => process.ppid !== PARENT && begin('parent exited'), watchParentEveryMs).unref();
  const begin = (reason: string) => {
    stopping = true;
    clearInterval(watch);
    log.info({ reason }, 'shutting down');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (!stopping) return begin(signal);
      log.warn({ signal }, 'a second signal: exiting without waiting for in-flight work');
      process.exit(128 + constants.signals[signal]);
    });
  }
}

/** A flag that takes only a duration (`--purge-interval 1min`), in its setting's unit. */
function durationFlag(flag: string, value: unknown, setting: Setting): number {
  const unit = setting.field.kind === 'int' ? setting.field.unit : undefined;
  if (typeof value !== 'string' || !unit) throw new ConfigError(`--${flag}: give it once, as a duration like 90s`);
  try {
    return durationIn(value, unit);
  } catch (err) {
    throw new ConfigError(`--${flag}: ${(err as Error).message}`);
  }
}

function valueAt(config: RotorConfig, path: string): unknown {
  return path.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown>)[key], config);
}
