import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import yargs from 'yargs';
import { ConfigError, DEFAULTS, resolveConfig } from '../../src/config/defaults.ts';
import { durationIn, envName, flagName, loadConfig, LOG_LEVELS, parseDuration, SETTINGS, type RotorConfig, type Setting } from '../../src/config/index.ts';
import { configFromArgs, serveOptions } from '../../src/cli/commands/serve.ts';

const dir = mkdtempSync(join(tmpdir(), 'rotor-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** A config file holding `settings` as JSON; its path. */
function configFile(settings: unknown): string {
  const file = join(dir, `config-${files++}.json`);
  writeFileSync(file, typeof settings === 'string' ? settings : JSON.stringify(settings));
  return file;
}

/** `rotor serve ARGS`'s config, through the real flag definitions (yargs, strict) and no environment. */
async function fromFlags(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<RotorConfig> {
  const args = await serveOptions(yargs(argv))
    .strict()
    .exitProcess(false)
    .fail((message, err) => {
      throw err ?? new Error(message);
    })
    .parseAsync();
  return configFromArgs(args, env);
}

/** `{connection: {maxInFlight: value}}` for connection.maxInFlight. */
function override(setting: Setting, value: unknown): Record<string, unknown> {
  return setting.section ? { [setting.section]: { [setting.key]: value } } : { [setting.key]: value };
}

function valueAt(config: RotorConfig, setting: Setting): unknown {
  const holder = (setting.section ? (config as unknown as Record<string, Record<string, unknown>>)[setting.section] : config) as Record<string, unknown>;
  return holder[setting.key];
}

function accepted(setting: Setting, value: unknown): boolean {
  try {
    resolveConfig(override(setting, value));
    return true;
  } catch {
    return false;
  }
}

/**
 * A value other than the default that the schema takes for this setting on its own (the rules
 * between settings included: frameTimeoutMs cannot go below headerTimeoutMs's default).
 */
function otherValue(setting: Setting): unknown {
  const { field } = setting;
  const current = valueAt(DEFAULTS, setting);
  const candidates: readonly unknown[] =
    field.kind === 'int' || field.kind === 'number'
      ? [field.min, Math.min(field.max, 1_000_000_007), field.min + 1, (current as number) * 2, (current as number) + 1]
      : field.kind === 'boolean'
        ? [!current]
        : field.kind === 'choice'
          ? field.values
          : ['rotor.example.test'];
  const value = candidates.find((candidate) => candidate !== current && accepted(setting, candidate));
  if (value === undefined) throw new Error(`no other value found for ${setting.path}`);
  return value;
}

/** How a value is written as text (an env var, a flag's argument). */
const asText = (value: unknown): string => String(value);

/** A flag's arguments: `--x value`, or `--x` / `--no-x` for a switch. */
function flagArgs(setting: Setting, value: unknown): string[] {
  if (setting.field.kind === 'boolean') return [value ? `--${flagName(setting)}` : `--no-${flagName(setting)}`];
  return [`--${flagName(setting)}`, asText(value)];
}

const durations = SETTINGS.filter((setting) => setting.field.kind === 'int' && setting.field.unit !== undefined);

t.test('defaults validate and overrides merge per section', async (t) => {
  const config = resolveConfig({ port: 0, wire: { maxBodyBytes: 100_000 } });
  t.equal(config.port, 0);
  t.equal(config.wire.maxBodyBytes, 100_000);
  t.equal(config.wire.maxHeaders, DEFAULTS.wire.maxHeaders, 'untouched fields keep their default');
  t.same(resolveConfig(), { ...DEFAULTS }, 'no override gives the defaults');
  t.same(resolveConfig({ port: undefined, connection: { maxInFlight: undefined } }), resolveConfig(), 'a key given as undefined is not given');
});

t.test('bad settings fail at start with a message naming the setting', async (t) => {
  const bad: Array<[string, Parameters<typeof resolveConfig>[0], RegExp]> = [
    ['negative port', { port: -1 }, /port/],
    ['fractional limit', { wire: { maxHeaders: 1.5 } }, /wire.maxHeaders/],
    ['header block smaller than a line', { wire: { maxLineBytes: 4096, maxHeaderBytes: 1024 } }, /maxHeaderBytes/],
    ['never-expiring tokens without the switch', { session: { tokenTtlMinutes: -1 } }, /allowNeverExpiring/],
    ['zero ttl', { session: { tokenTtlMinutes: 0 } }, /tokenTtlMinutes/],
    ['scrypt N not a power of two', { auth: { scryptN: 1000 } }, /power of two/],
    ['frame deadline shorter than header deadline', { connection: { headerTimeoutMs: 5000, frameTimeoutMs: 1000 } }, /frameTimeoutMs/],
    ['metadata larger than a body', { wire: { maxBodyBytes: 1000 } }, /session.maxMetaBytes/],
    ['TOTP window too wide', { auth: { totpWindow: 3 } }, /totpWindow/],
    ['scrypt N that OpenSSL refuses for this r', { auth: { scryptN: 65536, scryptR: 1 } }, /auth.scryptN.*below 2\^\(16 × auth.scryptR\)/],
    ['scrypt hashing at once past 4 GiB', { auth: { scryptN: 1 << 22, scryptR: 8, maxConcurrentHashes: 2 } }, /auth.scryptN.*bytes for hashing at once/],
  ];
  for (const [name, override, message] of bad) {
    t.throws(() => resolveConfig(override), { name: 'ConfigError', message }, name);
  }
  t.ok(resolveConfig({ session: { tokenTtlMinutes: -1, allowNeverExpiring: true } }), 'never-expiring with the switch is allowed');
  t.ok(resolveConfig({ auth: { scryptN: 32768, scryptR: 1 } }), 'the largest N OpenSSL takes at r = 1 is allowed');
  t.type(new ConfigError('x'), Error);
});

t.test('the schema has every setting of DEFAULTS and nothing else', async (t) => {
  const inDefaults = Object.entries(DEFAULTS).flatMap(([key, value]) =>
    typeof value === 'object' ? Object.keys(value as object).map((inner) => `${key}.${inner}`) : [key],
  );
  t.strictSame(
    SETTINGS.map((setting) => setting.path),
    inDefaults,
  );
  t.ok(SETTINGS.length >= 45, `${SETTINGS.length} settings`);
});

t.test('a setting named …Ms, …Seconds, …Minutes or …Hours is a duration in that unit, and no other is', async (t) => {
  for (const setting of SETTINGS) {
    const named = /Ms$/.test(setting.key) ? 'ms' : /Seconds$/.test(setting.key) ? 'seconds' : /Minutes$/.test(setting.key) ? 'minutes' : /Hours$/.test(setting.key) ? 'hours' : undefined;
    const unit = setting.field.kind === 'int' ? setting.field.unit : undefined;
    t.equal(unit, named, setting.path);
  }
});

t.test('logLevel takes exactly pino’s levels', async (t) => {
  t.strictSame([...LOG_LEVELS].sort(), [...Object.keys(pino.levels.values), 'silent'].sort());
  t.throws(() => resolveConfig({ logLevel: 'chatty' }), { message: 'logLevel must be one of fatal, error, warn, info, debug, trace, silent, got "chatty"' });
});

t.test('every setting is reachable from code, a config file, an env var and a flag', async (t) => {
  for (const setting of SETTINGS) {
    const value = otherValue(setting);
    const expected = resolveConfig(override(setting, value));
    t.equal(valueAt(expected, setting), value, `${setting.path} = ${asText(value)} from code`);
    t.strictSame(loadConfig({ file: configFile(override(setting, value)) }), expected, `${setting.path} from the file`);
    t.strictSame(loadConfig({ env: { [envName(setting)]: asText(value) } }), expected, `${setting.path} from ${envName(setting)}`);
    t.strictSame(await fromFlags(flagArgs(setting, value)), expected, `${setting.path} from ${flagArgs(setting, value).join(' ')}`);
  }
});

t.test('flags win over env vars, which win over the file; each source keeps what the later ones do not set', async (t) => {
  const file = configFile({ port: 4001, connection: { maxInFlight: 11, idleTimeoutMs: '3min' }, session: { openTokenCreate: true }, logLevel: 'warn' });
  const env = { ROTOR_PORT: '4002', ROTOR_CONNECTION_MAX_IN_FLIGHT: '22', ROTOR_SESSION_OPEN_TOKEN_CREATE: 'false' };
  t.strictSame(
    await fromFlags(['--config', file, '--port', '4003', '--no-session-open-token-create']),
    resolveConfig({ port: 4003, connection: { maxInFlight: 11, idleTimeoutMs: 180_000 }, logLevel: 'warn' }),
    'file, then flags',
  );
  const all = await fromFlags(['--config', file, '--port', '4003'], env);
  t.strictSame(all, resolveConfig({ port: 4003, connection: { maxInFlight: 22, idleTimeoutMs: 180_000 }, session: { openTokenCreate: false }, logLevel: 'warn' }), 'file, env, flags');
  t.strictSame(await fromFlags(['--config', file], env), resolveConfig({ port: 4002, connection: { maxInFlight: 22, idleTimeoutMs: 180_000 }, logLevel: 'warn' }), 'file, then env');
  t.strictSame(await fromFlags([], env), resolveConfig({ port: 4002, connection: { maxInFlight: 22 } }), 'env alone');
});

t.test('the short flags set their settings as before', async (t) => {
  const config = await fromFlags([
    '--max-connections', '7', '--max-connections-per-address', '3', '--listen-backlog', '100',
    '--purge-interval', '2min', '--token-lifetime', '3h', '--log-level', 'debug', '--host', '::1', '--port', '0',
  ]);
  t.strictSame(
    config,
    resolveConfig({ host: '::1', port: 0, logLevel: 'debug', connection: { maxConnections: 7, maxConnectionsPerAddress: 3, listenBacklog: 100 }, session: { purgeIntervalMs: 120_000, tokenTtlMinutes: 180 } }),
  );
  t.equal((await fromFlags(['--token-ttl', '-1', '--allow-never-expiring'])).session.tokenTtlMinutes, -1, '--token-ttl -1 --allow-never-expiring');
  t.equal((await fromFlags(['--token-ttl', '45'])).session.tokenTtlMinutes, 45, '--token-ttl in minutes');
  t.equal((await fromFlags(['--token-api'])).session.openTokenCreate, true, '--token-api opens token creation');
  await t.rejects(fromFlags(['--token-ttl', '30', '--token-lifetime', '1h']), { message: '--token-ttl and --token-lifetime both set session.tokenTtlMinutes: give one' });
  await t.rejects(fromFlags(['--max-connections', '2', '--connection-max-connections', '3']), { message: /both set connection\.maxConnections/ });
  await t.rejects(fromFlags(['--port', '1', '--port', '2']), { message: '--port: given more than once' });
  // note 004's flags take durations only, as they did: a bare number's unit would be a guess.
  await t.rejects(fromFlags(['--purge-interval', '5000']), { message: /--purge-interval: bad duration "5000"/ });
  await t.rejects(fromFlags(['--purge-interval', '0s']), { message: /session\.purgeIntervalMs must be an integer from 1000 to 5400000, got 0/ });
  await t.rejects(fromFlags(['--token-lifetime', '90s']), { message: '--token-lifetime: "90s" is not a whole number of minutes' });
  await t.rejects(fromFlags(['--connection-max-inflight', '3']), { message: /Unknown argument/ }, 'an unknown flag is refused (yargs strict)');
});

t.test('unknown keys are refused with their path, from every source', async (t) => {
  t.throws(() => resolveConfig({ connection: { maxInflight: 2 } } as never), { message: 'connection.maxInflight: unknown key — did you mean maxInFlight?' }, 'from code');
  t.throws(() => resolveConfig({ conection: {} } as never), { message: 'conection: unknown key — did you mean connection?' });
  t.throws(() => resolveConfig({ wire: { frobnicate: 1 } } as never), { message: 'wire.frobnicate: unknown key' }, 'nothing near it: no guess');
  const file = configFile({ connection: { maxInflight: 2 }, tasks: { concurrency: 2 } });
  t.throws(() => loadConfig({ file }), { name: 'ConfigError', message: `${file}: connection.maxInflight: unknown key — did you mean maxInFlight?` }, 'from a file');
  t.throws(() => loadConfig({ env: { ROTOR_CONNECTION_MAX_INFLIGHT: '2' } }), {
    message: 'ROTOR_CONNECTION_MAX_INFLIGHT: not a rotor setting — did you mean ROTOR_CONNECTION_MAX_IN_FLIGHT?',
  });
  t.throws(() => loadConfig({ env: { ROTOR_PASWORD: 'x' } }), { message: /ROTOR_PASWORD: not a rotor setting — did you mean ROTOR_PASSWORD\?/ });
  t.strictSame(loadConfig({ env: { ROTOR_PASSWORD: 'secret', ROTOR_MODEL_RUNS: '5', HOME: '/x' } }), resolveConfig(), 'what other parts of rotor read is not a setting, nor is what is not ROTOR_*');
  t.throws(() => loadConfig({ file: configFile('{"port": 1,') }), { message: new RegExp(`^${file.replace(/\d+\.json$/, '')}\\d+\\.json: not JSON: `) });
  t.throws(() => loadConfig({ file: configFile([1]) }), { message: /must hold a JSON object of settings/ });
  t.throws(() => loadConfig({ file: join(dir, 'missing.json') }), { message: /missing\.json: ENOENT/ });
});

t.test('out-of-range values are refused with their path and range, from every source', async (t) => {
  const ranged = SETTINGS.flatMap((setting) => {
    const { field } = setting;
    if (field.kind !== 'int' && field.kind !== 'number') return [];
    const outside = [field.min - 1, ...(field.max < Number.MAX_SAFE_INTEGER ? [field.max + 1] : [])];
    const range = field.max < Number.MAX_SAFE_INTEGER ? `from ${field.min} to ${field.max}` : `of at least ${field.min}`;
    return outside.map((value) => ({ setting, value, message: `${setting.path} must be ${field.kind === 'int' ? 'an integer' : 'a number'} ${range}, got ${value}` }));
  });
  t.ok(ranged.length > 40, `${ranged.length} values just outside a range`);
  for (const { setting, value, message } of ranged) {
    t.throws(() => resolveConfig(override(setting, value)), { message: new RegExp(`^${literal(message)}`) }, `${setting.path} = ${value} from code`);
    t.throws(() => loadConfig({ file: configFile(override(setting, value)) }), { message: new RegExp(`\\.json: ${literal(message)}`) }, 'from a file');
    t.throws(() => loadConfig({ env: { [envName(setting)]: String(value) } }), { message: new RegExp(`^${envName(setting)}: ${literal(message)}`) }, 'from the env');
    await t.rejects(fromFlags(flagArgs(setting, value)), { message: new RegExp(`^--${flagName(setting)}: ${literal(message)}`) }, 'from a flag');
  }
  t.throws(() => loadConfig({ env: { ROTOR_PORT: '' } }), { message: 'ROTOR_PORT: port must be an integer from 0 to 65535, got ""' }, 'an empty variable is given, not unset');
  t.throws(() => loadConfig({ env: { ROTOR_OBSERVABILITY_ACCESS_LOG: 'yes' } }), { message: 'ROTOR_OBSERVABILITY_ACCESS_LOG: observability.accessLog must be true or false, got "yes"' });
  t.throws(() => loadConfig({ file: configFile({ port: '4000x' }) }), { message: /port must be an integer from 0 to 65535, got "4000x"/ });
  t.throws(() => loadConfig({ env: { ROTOR_PORT: '70000', ROTOR_TASKS_CONCURRENCY: '0' }, flags: [{ flag: 'log-level', path: 'logLevel', value: 'chatty' }] }), {
    message: /ROTOR_PORT: .*\nROTOR_TASKS_CONCURRENCY: .*\n--log-level: logLevel must be one of/,
  }, 'every problem at once');
});

t.test('durations: one syntax, and a number in the unit of the setting’s name', async (t) => {
  t.strictSame(['500ms', '90s', '30min', '2h', '1d', '1h 30min', '3 days', '1week'].map(parseDuration), [500, 90_000, 1_800_000, 7_200_000, 86_400_000, 5_400_000, 259_200_000, 604_800_000]);
  for (const bad of ['', '90', '2 hours', '1.5h', '-5s', '5m']) t.throws(() => parseDuration(bad), { name: 'ConfigError', message: /^bad duration/ }, JSON.stringify(bad));
  t.equal(durationIn('2h', 'minutes'), 120);
  t.throws(() => durationIn('90s', 'minutes'), { message: '"90s" is not a whole number of minutes' });

  // Every duration setting, from a file and from the env, as a duration and as a number in its unit.
  const unitText = { ms: 'ms', seconds: 's', minutes: 'min', hours: 'h' } as const;
  for (const setting of durations) {
    const value = Math.abs(otherValue(setting) as number);
    const unit = setting.field.kind === 'int' ? setting.field.unit! : 'ms';
    const expected = resolveConfig(override(setting, value));
    const written = `${value}${unitText[unit]}`;
    t.strictSame(loadConfig({ file: configFile(override(setting, written)) }), expected, `${setting.path}: "${written}" in a file`);
    t.strictSame(loadConfig({ env: { [envName(setting)]: written } }), expected, `${envName(setting)}=${written}`);
    t.strictSame(loadConfig({ env: { [envName(setting)]: String(value) } }), expected, `${envName(setting)}=${value} (${unit})`);
    t.strictSame(await fromFlags([`--${flagName(setting)}`, written]), expected, `--${flagName(setting)} ${written}`);
  }
  t.strictSame(loadConfig({ env: { ROTOR_CONNECTION_IDLE_TIMEOUT_MS: '2min', ROTOR_SESSION_TOKEN_TTL_MINUTES: '1d', ROTOR_SESSION_DEFAULT_WAIT_FOR_SECONDS: '1min' } }).session, {
    ...DEFAULTS.session,
    tokenTtlMinutes: 1440,
    defaultWaitForSeconds: 60,
  });
  t.throws(() => loadConfig({ env: { ROTOR_SESSION_TOKEN_TTL_MINUTES: '90s' } }), { message: 'ROTOR_SESSION_TOKEN_TTL_MINUTES: session.tokenTtlMinutes: "90s" is not a whole number of minutes' });
  t.throws(() => loadConfig({ file: configFile({ tasks: { timeoutMs: '10 parsecs' } }) }), { message: /tasks\.timeoutMs: bad duration "10 parsecs"/ });
  t.throws(() => resolveConfig({ tasks: { timeoutMs: 2 ** 31 } }), { message: /tasks\.timeoutMs must be an integer from 1 to 2147483647, got 2147483648/ }, "past Node's timer limit");
});

function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
