/**
 * The real `rotor` command (node bin/rotor.js) as a user runs it: as a client against an
 * in-process server, managing users in an embedded store, and as a server it starts and stops.
 *
 * Starting the CLI costs a second or more of CPU (tsx loads the sources), so the independent
 * command chains all start at once below, at most CLI_JOBS commands running at a time, and each
 * subtest then checks its own chain.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getHeader } from '../../src/wire/index.ts';
import { serve } from '../../src/server/index.ts';
import { openStore } from '../../src/store/index.ts';
import { exampleApp } from '../../src/app/example.ts';
import { RawConn, request, sleep, startServer, summary } from './helpers.ts';

const BIN = fileURLToPath(new URL('../../bin/rotor.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// A guard against a hung child only: on a loaded machine a start can take many seconds.
const SPAWN_TIMEOUT_MS = 60_000;
const CLI_JOBS = 3;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function startCli(args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const env = { ...process.env };
  delete env.ROTOR_PASSWORD; // passwords come from the arguments only
  delete env.NODE_OPTIONS; // tap's process tracking is no use to the CLI, and costs each start time
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), SPAWN_TIMEOUT_MS);
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

let running = 0;
const waiting: Array<() => void> = [];

/** One short-lived command, once fewer than CLI_JOBS are running. */
async function cli(...args: string[]): Promise<Run> {
  if (running >= CLI_JOBS) await new Promise<void>((resolve) => waiting.push(resolve));
  else running++;
  try {
    return await startCli(args).done;
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Connect once the server listens (a starting CLI takes a while). */
async function connectWhenUp(port: number, exited: () => boolean): Promise<RawConn> {
  const deadline = Date.now() + SPAWN_TIMEOUT_MS;
  for (;;) {
    try {
      return await RawConn.connect(port);
    } catch (err) {
      if (exited() || Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

const tmp = mkdtempSync(join(tmpdir(), 'rotor-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const srv = await startServer({ tasks: { pollIntervalMs: 50 } });
t.teardown(() => srv.close());
const port = String(srv.port);
const login = ['--port', port, '--user', 'alice', '--password', 'pw'];

// --- the chains, all started now ------------------------------------------------------------

const help = Promise.all([cli('--help'), cli('serve', '--help')]);

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

const dataDir = join(tmp, 'data');
const users = (async () => {
  const add = await cli('user', 'add', 'bob', '--password', 'builder', '--data', dataDir);
  const list = await cli('user', 'list', '--data', dataDir);
  return { add, list };
})();

const memoryServer = (async () => {
  const servePort = await freePort();
  const server = startCli(['serve', '--store', 'memory', '--port', String(servePort), '--log-level', 'warn']);
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
    return { ping, loginReply, run, exitMs, idleGotBytes: idle.bytesReceived };
  } finally {
    server.child.kill('SIGKILL');
  }
})();

// Nothing may reject unobserved before its subtest awaits it.
const bench = cli('bench', '--spawn', 'rotor', '--duration', '500', '--warmup', '100', '--connections', '1', '--pipeline', '2', '--json', '--no-progress');
const benchElsewhere = cli('bench', '--host', '192.0.2.1', '--duration', '100');
for (const chain of [help, oneShot, withTokenFile, users, memoryServer, bench, benchElsewhere]) chain.catch(() => {});

// --- the checks ------------------------------------------------------------------------------

t.test('rotor --help and rotor serve --help exit 0', async (t) => {
  const [top, serve] = await help;
  t.equal(top.code, 0, top.stderr);
  t.match(top.stdout, /rotor serve/);
  t.match(top.stdout, /rotor call <verb> <path>/);
  t.equal(serve.code, 0, serve.stderr);
  t.match(serve.stdout, /--store/);
  t.match(serve.stdout, /--port/);
});

t.test('rotor call logs in, prints the reply body, and logs out', async (t) => {
  const run = await oneShot;
  t.equal(run.stderr, '');
  t.equal(run.stdout, 'hello, alice');
  t.equal(run.code, 0);
});

t.test('rotor call --token-file: the second call uses the rotated token; --wait fetches the result', async (t) => {
  const { first, second, tokens } = await withTokenFile;
  t.strictSame([first.code, first.stdout, first.stderr], [0, 'hello, alice', ''], 'first call: login, GET /hello');
  t.strictSame([second.code, second.stdout, second.stderr], [0, 'cba', ''], 'second call: token from the file, POST /reverse --wait');
  for (const token of tokens) t.match(token, /^k1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/, 'the file holds one token');
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
  const { add, list } = await users;
  t.strictSame([add.code, add.stdout, add.stderr], [0, 'user bob saved\n', ''], 'user add');
  t.strictSame([list.code, list.stdout, list.stderr], [0, 'bob\n', ''], 'user list');

  // A server on that data directory lets bob in with the password given to `user add`.
  const store = await openStore('lmdb', { dataDir });
  const server = await serve({ store, app: exampleApp(), config: { port: 0, logLevel: 'silent' } });
  t.teardown(async () => {
    await server.close();
    await store.close();
  });
  const conn = await RawConn.connect(server.tcp.address.port);
  t.teardown(() => conn.destroy());
  const wrong = await conn.call(request('POST', '/rotor/login', { User: 'bob', Password: 'wrong' }));
  t.strictSame(summary(wrong), { status: 401, error: 'ROTOR_E_AUTH_FAILED', body: undefined }, 'a wrong password is refused');
  const ok = await conn.call(request('POST', '/rotor/login', { User: 'bob', Password: 'builder' }));
  t.equal(ok.status, 200, 'the right one is not');
  const hello = await conn.call(request('GET', '/hello', { Token: getHeader(ok, 'Token') ?? '' }));
  t.strictSame(summary(hello), { status: 200, error: undefined, body: 'hello, bob' });
});

t.test('rotor serve --store memory serves frames and exits 0 on SIGTERM', async (t) => {
  const { ping, loginReply, run, exitMs, idleGotBytes } = await memoryServer;
  t.strictSame(ping, { status: 200, error: undefined, body: undefined }, 'ping');
  t.strictSame(loginReply, { status: 401, error: 'ROTOR_E_AUTH_FAILED', body: undefined }, 'an empty store has no users');
  t.equal(run.signal, null, 'not killed');
  t.equal(run.code, 0, `exit code (${run.stderr})`);
  t.ok(exitMs < 5_000, `exited ${exitMs} ms after SIGTERM`);
  t.equal(idleGotBytes, 0, 'an idle connection was closed without a frame');
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
