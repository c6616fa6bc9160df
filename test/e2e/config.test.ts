/**
 * Settings as a user gives them to the real `rotor` command: a --config file, ROTOR_* env vars,
 * flags; `rotor config print`; bad settings refused at start; `rotor serve --user` on a memory
 * store. The commands are independent, so they all start at once and each subtest awaits its own.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { resolveConfig } from '../../src/config/defaults.ts';
import { getHeader } from '../../src/wire/index.ts';
import { cliWith, freePort, RawConn, request, startCli, summary, type CliInput } from './helpers.ts';
import { logLines, LogWatch } from './processes.ts';

const rotor = (args: string[], input: CliInput = {}) => cliWith(input, ...args);
/** `rotor ARGS` left running, its log lines watched. */
function startRotor(args: string[], input: CliInput = {}) {
  const { child, done } = startCli(args, input);
  return { child, done, log: new LogWatch(child) };
}

const dir = mkdtempSync(join(tmpdir(), 'rotor-config-e2e-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, settings: unknown): string => {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(settings));
  return path;
};

// --- everything starts now ---------------------------------------------------------------------

const settingsFile = file('rotor.json', { port: 4001, connection: { maxInFlight: 11, idleTimeoutMs: '3min' }, tasks: { concurrency: 3 }, logLevel: 'warn' });
const printed = rotor(['config', 'print', '--config', settingsFile, '--port', '4003', '--session-purge-interval-ms', '5min'], {
  env: { ROTOR_PORT: '4002', ROTOR_CONNECTION_MAX_IN_FLIGHT: '22', ROTOR_PASSWORD: 'not a setting' },
});
const reprinted = printed.then((run) => rotor(['config', 'print', '--config', file('printed.json', JSON.parse(run.stdout))]));

const unknownKeyFile = file('typo.json', { connection: { maxInflight: 2 } });
const unknownInFile = rotor(['serve', '--store', 'memory', '--config', unknownKeyFile]);
const unknownInFilePrinted = rotor(['config', 'print', '--config', unknownKeyFile]);
const unknownVariable = rotor(['serve', '--store', 'memory'], { env: { ROTOR_CONNECTION_MAX_INFLIGHT: '2' } });
const chatty = rotor(['serve', '--store', 'memory', '--log-level', 'chatty']);
const chattyPrinted = rotor(['config', 'print', '--log-level', 'chatty']);
const userOnDurableStore = rotor(['serve', '--data', join(dir, 'data'), '--user', 'alice'], { env: { ROTOR_PASSWORD: 'pw' } });

/**
 * `rotor serve --store memory --user alice`, the password one line on stdin, the port from a
 * config file and a cheap scrypt cost from a flag; logs in, says hello, stops with SIGTERM.
 */
const withUser = (async () => {
  const port = await freePort();
  const server = startRotor(['serve', '--store', 'memory', '--user', 'alice', '--config', file('user.json', { port }), '--auth-scrypt-n', '1024'], { stdin: 'wonderland\n' });
  try {
    const listening = await server.log.listening();
    const conn = await RawConn.connect(port);
    const wrong = summary(await conn.call(request('POST', '/rotor/login', { User: 'alice', Password: 'alice' }), 10_000));
    const login = await conn.call(request('POST', '/rotor/login', { User: 'alice', Password: 'wonderland' }), 10_000);
    const hello = summary(await conn.call(request('GET', '/hello', { Token: getHeader(login, 'Token') ?? '' }), 10_000));
    conn.destroy();
    server.child.kill('SIGTERM');
    return { listening, wrong, login: summary(login), hello, run: await server.done };
  } finally {
    server.child.kill('SIGKILL');
  }
})();

/** `rotor serve --store memory` with its port from ROTOR_PORT and no --user: the warning says how to add one. */
const fromEnv = (async () => {
  const port = await freePort();
  const server = startRotor(['serve', '--store', 'memory'], { env: { ROTOR_PORT: String(port), ROTOR_LOG_LEVEL: 'warn' } });
  try {
    const warning = await server.log.line((entry) => String(entry.msg).startsWith('no users yet'));
    const conn = await RawConn.connect(port);
    const ping = summary(await conn.call(request('GET', '/rotor/ping'), 10_000));
    conn.destroy();
    server.child.kill('SIGTERM');
    return { warning, ping, run: await server.done };
  } finally {
    server.child.kill('SIGKILL');
  }
})();

const all = [printed, reprinted, unknownInFile, unknownInFilePrinted, unknownVariable, chatty, chattyPrinted, userOnDurableStore, withUser, fromEnv];
for (const run of all) (run as Promise<unknown>).catch(() => {});

// --- the checks --------------------------------------------------------------------------------

t.test('rotor config print: defaults < --config file < env < flags, as JSON that --config takes back', async (t) => {
  const run = await printed;
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stderr, '');
  t.strictSame(
    JSON.parse(run.stdout),
    resolveConfig({ port: 4003, connection: { maxInFlight: 22, idleTimeoutMs: 180_000 }, session: { purgeIntervalMs: 300_000 }, tasks: { concurrency: 3 }, logLevel: 'warn' }),
    'port from the flag over env over file, maxInFlight from env over file, the rest of the file kept, durations in their keys’ units',
  );
  const again = await reprinted;
  t.equal(again.code, 0, again.stderr);
  t.equal(again.stdout, run.stdout, 'the printed config, given as --config, prints the same');
});

t.test('an unknown key or variable stops rotor serve at start, exit 1, with its path and a suggestion', async (t) => {
  for (const [name, run] of [['serve', await unknownInFile], ['config print', await unknownInFilePrinted]] as const) {
    t.equal(run.code, 1, name);
    t.equal(run.stderr, `rotor: ${unknownKeyFile}: connection.maxInflight: unknown key — did you mean maxInFlight?\n`, `${name}: the message`);
    t.equal(run.stdout, '', `${name}: nothing logged: the server never started`);
  }
  const env = await unknownVariable;
  t.equal(env.code, 1);
  t.equal(env.stderr, 'rotor: ROTOR_CONNECTION_MAX_INFLIGHT: not a rotor setting — did you mean ROTOR_CONNECTION_MAX_IN_FLIGHT?\n');
  t.equal(env.stdout, '');
});

t.test('--log-level chatty is refused with one clean line, by serve and by config print', async (t) => {
  for (const [name, run] of [['serve', await chatty], ['config print', await chattyPrinted]] as const) {
    t.equal(run.code, 1, name);
    t.equal(run.stderr, 'rotor: --log-level: logLevel must be one of fatal, error, warn, info, debug, trace, silent, got "chatty"\n', name);
    t.equal(run.stdout, '', name);
  }
});

t.test('rotor serve --user on a memory store asks for the password; the user can then log in', async (t) => {
  const { listening, wrong, login, hello, run } = await withUser;
  t.ok(listening.port > 0, 'it listened on the port of the config file');
  t.strictSame(wrong, { status: 401, error: 'ROTOR_E_AUTH_FAILED', body: undefined }, 'a wrong password is refused');
  t.equal(login.status, 200, 'the password given on stdin logs in');
  t.strictSame(hello, { status: 200, error: undefined, body: 'hello, alice' });
  t.strictSame([run.code, run.signal], [0, null], `SIGTERM: exit 0 (${run.stderr})`);
  t.notOk(logLines(run.stdout).some((entry) => String(entry.msg).startsWith('no users yet')), 'no "no users" warning');

  const durable = await userOnDurableStore;
  t.equal(durable.code, 1, '--user with a durable store is refused');
  t.match(durable.stderr, /--user is for --store memory; add users of a durable store with `rotor user add <name>`/);
});

t.test('a memory store without --user: ROTOR_PORT reaches the listener, and the warning says how to add a user', async (t) => {
  const { warning, ping, run } = await fromEnv;
  t.strictSame(ping, { status: 200, error: undefined, body: undefined }, 'served on the port ROTOR_PORT gave');
  t.match(String(warning.msg), /memory store starts empty.*--user <name>/);
  t.notMatch(String(warning.msg), /user add/, 'not the advice for a durable store, which a memory store cannot take');
  t.equal(run.code, 0, run.stderr);
});
