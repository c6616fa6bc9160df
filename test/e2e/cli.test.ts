/**
 * The real `rotor` command (node bin/rotor.js) as a user runs it: as a client against an
 * in-process server, managing users in an embedded store, and as a server it starts and stops.
 *
 * Starting the CLI costs a second or more of CPU, so the independent command chains all start
 * at once below (helpers.ts runs a few at a time), and each subtest then checks its own chain.
 */
import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeader } from '../../src/wire/index.ts';
import { serve } from '../../src/server/index.ts';
import { openStore } from '../../src/store/index.ts';
import { exampleApp } from '../../src/app/example.ts';
import { cli, cliOnTerminal, cliWith, connectWhenUp, freePort, RawConn, request, startCli, startServer, summary } from './helpers.ts';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const tmp = mkdtempSync(join(tmpdir(), 'rotor-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const srv = await startServer({ tasks: { pollIntervalMs: 50 } });
t.teardown(() => srv.close());
const port = String(srv.port);
const login = ['--port', port, '--user', 'alice', '--password', 'pw'];

// --- the chains, all started now ------------------------------------------------------------

const help = Promise.all([cli('--help'), cli('serve', '--help'), cli('call', '--help'), cli('user', 'add', '--help')]);

// Short flags, and the version from another project's directory: rotor's own, never that project's.
const otherProject = join(tmp, 'other-project');
mkdirSync(otherProject);
writeFileSync(join(otherProject, 'package.json'), JSON.stringify({ name: 'other', version: '9.9.9' }));
const shortFlags = (async () => ({
  h: await cli('-h'),
  serveH: await cli('serve', '-h'),
  v: await cliWith({ cwd: otherProject }, '-v'),
  version: await cliWith({ cwd: otherProject }, '--version'),
}))();

// Typos: a near-miss command is named back; an unknown flag is refused.
const typos = (async () => ({
  command: await cli('sevre'),
  subcommand: await cli('user', 'ad', 'bob'),
  flag: await cli('call', '--prot', port, 'GET', '/hello'),
}))();

// The in-process server has alice only: bench's default user cannot log in there.
const benchNoUser = cli('bench', '--port', port, '--duration', '100', '--warmup', '0', '--connections', '1', '--pipeline', '1', '--no-progress');

const oneShot = cli('call', ...login, 'GET', '/hello');

const tokenFile = join(tmp, 'token');
const withTokenFile = (async () => {
  const first = await cli('call', ...login, '--token-file', tokenFile, 'GET', '/hello');
  const token1 = readFileSync(tokenFile, 'utf8');
  // No --user: the token from the file is all the second call has.
  const second = await cli('call', '--port', port, '--token-file', tokenFile, '--wait', 'POST', '/reverse', '--data', 'abc');
  const token2 = readFileSync(tokenFile, 'utf8');
  return { first, second, tokens: [token1, token2] };
})();

const oneShotStdin = cliWith({ stdin: 'pw\n' }, 'call', '--port', port, '--user', 'alice', 'GET', '/hello');
const oneShotEnv = cliWith({ env: { ROTOR_PASSWORD: 'pw' } }, 'call', '--port', port, '--user', 'alice', 'GET', '/hello');

// rotor creates this directory (and its parent): user add opens the embedded store in it.
const dataDir = join(tmp, 'new', 'data');
const users = (async () => {
  const add = await cli('user', 'add', 'bob', '--password', 'builder', '--data', dataDir);
  const addStdin = await cliWith({ stdin: 'carpenter\n' }, 'user', 'add', 'carol', '--data', dataDir);
  const addEnv = await cliWith({ env: { ROTOR_PASSWORD: 'electrician' } }, 'user', 'add', 'erin', '--data', dataDir);
  const tooLong = await cli('user', 'add', 'x'.repeat(257), '--password', 'p', '--data', dataDir);
  const list = await cli('user', 'list', '--data', dataDir);
  return { add, addStdin, addEnv, tooLong, list };
})();

// On a terminal the password is typed at a prompt; `\x7f` is the backspace key.
const terminalDataDir = join(tmp, 'terminal-data');
const onTerminal = cliOnTerminal('password: ', 'plumbez\x7fr', 'user', 'add', 'dave', '--data', terminalDataDir);

// An existing data directory open to everyone, with a key file anyone may read.
const openDataDir = join(tmp, 'open-data');
mkdirSync(openDataDir, { mode: 0o755 });
chmodSync(openDataDir, 0o755);
const openKeyFile = join(openDataDir, 'keys.json');
writeFileSync(openKeyFile, JSON.stringify([{ id: 'k1', secret: Buffer.alloc(32, 7).toString('base64') }]));
chmodSync(openKeyFile, 0o644);
const openKeys = (async () => cli('serve', '--data', openDataDir, '--port', String(await freePort())))();
const openDirUsers = cli('user', 'list', '--data', openDataDir);

// Flags whose zero or empty value used to mean "the default".
const zeroFlags = (async () => {
  const serveWith = async (...flags: string[]) => cli('serve', '--store', 'memory', '--port', String(await freePort()), ...flags);
  return {
    purgeZero: await serveWith('--purge-interval', '0s'),
    purgeEmpty: await serveWith('--purge-interval', ''),
    lifetimeEmpty: await serveWith('--token-lifetime', ''),
    tlsEmpty: await serveWith('--tls-cert', '', '--tls-key', ''),
    keyFileEmpty: await serveWith('--key-file', ''),
    dataFileEmpty: await cli('call', ...login, '--data-file', '', 'POST', '/reverse', '--data', 'abc'),
  };
})();

// --key-file keeps the keys out of the data directory; rotor creates the file and its directory.
const memoryKeyFile = join(tmp, 'keys', 'memory-keys.json');
const memoryServer = (async () => {
  const servePort = await freePort();
  const server = startCli(['serve', '--store', 'memory', '--port', String(servePort), '--log-level', 'warn', '--key-file', memoryKeyFile]);
  let exited = false;
  void server.done.then(() => (exited = true));
  try {
    const conn = await connectWhenUp(servePort, () => exited);
    const ping = summary(
      await conn.call(request('GET', '/rotor/ping'), 5_000).catch(async (err) => {
        server.child.kill('SIGKILL');
        const run = await server.done;
        throw new Error(`${err.message}; rotor serve said ${JSON.stringify(run)}`);
      }),
    );
    // A memory store starts empty: no user can log in, and the answer says so properly.
    const loginReply = summary(await conn.call(request('POST', '/rotor/login', { User: 'alice', Password: 'pw' }), 5_000));
    const idle = await RawConn.connect(servePort);
    const signalled = Date.now();
    server.child.kill('SIGTERM');
    const run = await server.done;
    const exitMs = Date.now() - signalled;
    await Promise.all([conn.waitClosed(1_000), idle.waitClosed(1_000)]);
    return { ping, loginReply, run, exitMs, idleFrames: idle.frames.map((frame) => frame.headers.find(([name]) => name === 'Error')?.[1]) };
  } finally {
    server.child.kill('SIGKILL');
  }
})();

// Nothing may reject unobserved before its subtest awaits it.
const bench = cli('bench', '--spawn', 'rotor', '--duration', '500', '--warmup', '100', '--connections', '1', '--pipeline', '2', '--json', '--no-progress');
const benchElsewhere = cli('bench', '--host', '192.0.2.1', '--duration', '100');
const chains = [help, shortFlags, typos, benchNoUser, oneShot, oneShotStdin, oneShotEnv, withTokenFile, users, onTerminal, openKeys, openDirUsers, zeroFlags, memoryServer, bench, benchElsewhere];
for (const chain of chains) chain.catch(() => {});

const modeOf = (path: string): number => statSync(path).mode & 0o777;
const octal = (mode: number): string => `0${mode.toString(8)}`;

/** Log in to a server on the embedded store in `dir` once with each password; the statuses. */
async function loginStatuses(t: TapTest, dir: string, user: string, passwords: string[]): Promise<number[]> {
  const store = await openStore('lmdb', { dataDir: dir });
  const server = await serve({ store, app: exampleApp(), config: { port: 0, logLevel: 'silent' }, ephemeralKeys: true });
  const conn = await RawConn.connect(server.tcp.address.port);
  t.teardown(async () => {
    conn.destroy();
    await server.close();
    await store.close();
  });
  const statuses: number[] = [];
  // A generous bound: the store's users have the default scrypt cost (≈ 0.25 s a hash, more on a loaded machine).
  for (const password of passwords) statuses.push((await conn.call(request('POST', '/rotor/login', { User: user, Password: password }), 15_000)).status);
  return statuses;
}

// --- the checks ------------------------------------------------------------------------------

t.test('rotor --help and rotor serve --help exit 0', async (t) => {
  const [top, serve, call, userAdd] = await help;
  t.equal(top.code, 0, top.stderr);
  t.match(top.stdout, /rotor serve/);
  t.match(top.stdout, /rotor call <verb> <path>/);
  t.equal(serve.code, 0, serve.stderr);
  t.match(serve.stdout, /--store/);
  t.match(serve.stdout, /--port/);
  t.match(serve.stdout.replace(/\s+/g, ' '), /--key-file .*outside the data directory/, 'serve --help says why the key file may live elsewhere');
  for (const [name, run] of [['call', call], ['user add', userAdd]] as const) {
    t.equal(run.code, 0, run.stderr);
    t.match(run.stdout.replace(/\s+/g, ' '), /--password .*visible to other users .*\bps\b/, `${name} --help warns that --password shows in ps`);
  }
});

t.test('-h is --help and -v is --version; the version is rotor\'s own, whatever the directory', async (t) => {
  const [top] = await help;
  const { h, serveH, v, version } = await shortFlags;
  t.strictSame([h.code, h.stdout, h.stderr], [0, top.stdout, ''], 'rotor -h prints what rotor --help prints');
  t.equal(serveH.code, 0, serveH.stderr);
  t.match(serveH.stdout, /--store/, 'rotor serve -h is the help of serve');
  const own = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
  t.strictSame([v.code, v.stdout, v.stderr], [0, `${own}\n`, ''], 'rotor -v, run in a project of version 9.9.9');
  t.strictSame([version.code, version.stdout, version.stderr], [0, `${own}\n`, ''], 'rotor --version, same place');
});

t.test('a mistyped command gets a suggestion, an unknown flag is refused', async (t) => {
  const { command, subcommand, flag } = await typos;
  t.equal(command.code, 1);
  t.match(command.stderr, /Did you mean serve\?/);
  t.equal(subcommand.code, 1);
  t.match(subcommand.stderr, /Did you mean add\?/);
  t.equal(flag.code, 1);
  t.match(flag.stderr, /Unknown argument: prot/);
  t.equal(flag.stdout, '', 'nothing was sent');
});

t.test('rotor bench that cannot log in says how to add its user', async (t) => {
  const run = await benchNoUser;
  t.equal(run.code, 1);
  t.match(run.stderr, /ROTOR_E_AUTH_FAILED/);
  t.match(run.stderr, /rotor user add bench/, run.stderr);
  t.match(run.stderr, /--user/);
});

t.test('rotor call logs in, prints the reply body, and logs out', async (t) => {
  const run = await oneShot;
  t.equal(run.stderr, '');
  t.equal(run.stdout, 'hello, alice');
  t.equal(run.code, 0);
});

t.test('rotor call --user takes the password from one line on stdin, or from ROTOR_PASSWORD', async (t) => {
  for (const [how, run] of [['stdin', await oneShotStdin], ['ROTOR_PASSWORD', await oneShotEnv]] as const) {
    t.strictSame([run.code, run.stdout, run.stderr], [0, 'hello, alice', ''], how);
  }
});

t.test('rotor call --token-file: the second call uses the rotated token; --wait fetches the result', async (t) => {
  const { first, second, tokens } = await withTokenFile;
  t.strictSame([first.code, first.stdout, first.stderr], [0, 'hello, alice', ''], 'first call: login, GET /hello');
  t.strictSame([second.code, second.stdout, second.stderr], [0, 'cba', ''], 'second call: token from the file, POST /reverse --wait');
  for (const token of tokens) t.match(token, /^k[a-z0-9]{1,15}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/, 'the file holds one token');
  t.not(tokens[0], tokens[1], 'the second call rotated the token in the file');

  // The file's token is the newest: it works from a raw client, and the one before it is reuse.
  const conn = await RawConn.connect(srv.port);
  t.teardown(() => conn.destroy());
  const reply = await conn.call(request('GET', '/hello', { Token: tokens[1].trim() }));
  t.strictSame(summary(reply), { status: 200, error: undefined, body: 'hello, alice' }, 'the token in the file is live');
  t.ok(getHeader(reply, 'Token'));
  const old = await conn.call(request('GET', '/hello', { Token: tokens[0].trim() }));
  t.strictSame(summary(old), { status: 401, error: 'ROTOR_E_TOKEN_REUSED', body: undefined }, 'an older one is reuse');
});

t.test('rotor user add / user list on the embedded store; the user can log in', async (t) => {
  const { add, addStdin, addEnv, tooLong, list } = await users;
  t.equal(tooLong.code, 1, 'a name the server would refuse at login is refused here');
  t.match(tooLong.stderr, /at most 256 bytes/);
  t.strictSame([add.code, add.stdout, add.stderr], [0, 'user bob saved\n', ''], 'user add --password');
  t.strictSame([addStdin.code, addStdin.stdout, addStdin.stderr], [0, 'user carol saved\n', ''], 'user add, the password on stdin');
  t.strictSame([addEnv.code, addEnv.stdout, addEnv.stderr], [0, 'user erin saved\n', ''], 'user add, the password in ROTOR_PASSWORD');
  t.strictSame([list.code, list.stdout, list.stderr], [0, 'bob\ncarol\nerin\n', ''], 'user list');

  // The store holds password hashes and TOTP secrets: only its owner may read it.
  t.equal(octal(modeOf(dataDir)), '0700', 'the data directory rotor created');
  for (const file of ['data.mdb', 'lock.mdb']) t.equal(octal(modeOf(join(dataDir, file))), '0600', file);
  t.strictSame(await loginStatuses(t, dataDir, 'carol', ['carpenter', 'wrong']), [200, 401], 'carol: the password from stdin');
  t.strictSame(await loginStatuses(t, dataDir, 'erin', ['electrician', 'wrong']), [200, 401], 'erin: the password from ROTOR_PASSWORD');

  // A server on that data directory lets bob in with the password given to `user add`.
  const store = await openStore('lmdb', { dataDir });
  const server = await serve({ store, app: exampleApp(), config: { port: 0, logLevel: 'silent' }, ephemeralKeys: true });
  t.teardown(async () => {
    await server.close();
    await store.close();
  });
  const conn = await RawConn.connect(server.tcp.address.port);
  t.teardown(() => conn.destroy());
  const wrong = await conn.call(request('POST', '/rotor/login', { User: 'bob', Password: 'wrong' }), 15_000);
  t.strictSame(summary(wrong), { status: 401, error: 'ROTOR_E_AUTH_FAILED', body: undefined }, 'a wrong password is refused');
  const ok = await conn.call(request('POST', '/rotor/login', { User: 'bob', Password: 'builder' }), 15_000);
  t.equal(ok.status, 200, 'the right one is not');
  const hello = await conn.call(request('GET', '/hello', { Token: getHeader(ok, 'Token') ?? '' }));
  t.strictSame(summary(hello), { status: 200, error: undefined, body: 'hello, bob' });
});

t.test('rotor user add on a terminal prompts for the password without echoing it', async (t) => {
  const { shown, typed, code } = await onTerminal;
  t.ok(typed, `the prompt showed: ${JSON.stringify(shown)}`);
  t.equal(code, 0, shown);
  t.match(shown, /user dave saved/);
  t.notMatch(shown, /plumb/, 'nothing typed was echoed');
  t.strictSame(await loginStatuses(t, terminalDataDir, 'dave', ['plumber', 'plumbez']), [200, 401], 'the backspace took the z out');
});

t.test('rotor serve refuses a key file others can read, and warns about an open data directory', async (t) => {
  const run = await openKeys;
  t.equal(run.code, 1, 'refused to start');
  t.match(run.stderr, `rotor: ${openKeyFile}`, 'the error names the key file');
  t.match(run.stderr, `chmod 600 ${openKeyFile}`, 'and says how to fix it');
  const logged = run.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line));
  const warning = logged.find((entry) => String(entry.msg).includes(`chmod 700 ${openDataDir}`));
  t.equal(warning?.level, 40, `the data directory's mode is warned about, with the fix: ${run.stdout}`);
  t.equal(octal(modeOf(openKeyFile)), '0644', 'rotor left the file as it was');

  const users = await openDirUsers;
  t.strictSame([users.code, users.stdout], [0, ''], 'rotor user list still works there');
  t.match(users.stderr, `rotor: warning: the data directory ${openDataDir}`, 'and warns on stderr');
  t.match(users.stderr, `chmod 700 ${openDataDir}`);
});

t.test('zero and empty flag values are refused, not taken for the default', async (t) => {
  const { purgeZero, purgeEmpty, lifetimeEmpty, tlsEmpty, keyFileEmpty, dataFileEmpty } = await zeroFlags;
  t.strictSame([purgeZero.code, purgeZero.stdout], [1, ''], '--purge-interval 0s');
  t.match(purgeZero.stderr, /session\.purgeIntervalMs must be an integer from 1000 to 5400000, got 0/);
  t.strictSame([purgeEmpty.code, purgeEmpty.stdout], [1, ''], '--purge-interval ""');
  t.match(purgeEmpty.stderr, /bad duration ""/);
  t.strictSame([lifetimeEmpty.code, lifetimeEmpty.stdout], [1, ''], '--token-lifetime ""');
  t.match(lifetimeEmpty.stderr, /bad duration ""/);
  t.strictSame([tlsEmpty.code, tlsEmpty.stdout], [1, ''], '--tls-cert "" --tls-key "" (not plain TCP)');
  t.match(tlsEmpty.stderr, /ENOENT/);
  t.strictSame([keyFileEmpty.code, keyFileEmpty.stdout], [1, ''], '--key-file "" (not a throwaway key)');
  t.match(keyFileEmpty.stderr, /ENOENT/);
  t.strictSame([dataFileEmpty.code, dataFileEmpty.stdout], [1, ''], '--data-file "" (not --data)');
  t.match(dataFileEmpty.stderr, /ENOENT/);
});

t.test('rotor serve --store memory serves frames and exits 0 on SIGTERM', async (t) => {
  const { ping, loginReply, run, exitMs, idleFrames } = await memoryServer;
  t.strictSame(ping, { status: 200, error: undefined, body: undefined }, 'ping');
  t.strictSame(loginReply, { status: 401, error: 'ROTOR_E_AUTH_FAILED', body: undefined }, 'an empty store has no users');
  t.equal(run.signal, null, 'not killed');
  t.equal(run.code, 0, `exit code (${run.stderr})`);
  t.ok(exitMs < 5_000, `exited ${exitMs} ms after SIGTERM`);
  t.strictSame(idleFrames, ['ROTOR_E_SHUTTING_DOWN'], 'an idle connection got one ROTOR_E_SHUTTING_DOWN frame, then the close');
  t.equal(octal(modeOf(memoryKeyFile)), '0600', 'the --key-file rotor created');
  t.equal(octal(modeOf(join(tmp, 'keys'))), '0700', 'and its directory');
});

t.test('rotor bench drives a spawned rotor and reports JSON; it refuses a non-loopback target', async (t) => {
  const run = await bench;
  t.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  t.equal(result.format, 'rotor-bench/1');
  t.equal(result.scenario, 'rotate');
  t.ok(result.ok > 0, 'some exchanges succeeded');
  t.same(result.errors, {}, 'none failed');
  const refused = await benchElsewhere;
  t.equal(refused.code, 1);
  t.match(refused.stderr, /only targets loopback/);
});
