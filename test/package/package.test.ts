/**
 * rotor as a package, the way a user gets it: the working tree is copied to a checkout whose path
 * has a space, `npm pack` builds and packs it there (its `prepare`), and the tarball is installed
 * into a project of its own (another name, another version, no access to rotor's sources). There
 * plain JavaScript serves and calls, a strict TypeScript consumer type-checks against the shipped
 * .d.ts, and `npx rotor` runs the compiled CLI. The checkout copy itself then serves from its path
 * with a space, compiled and from the sources.
 *
 * Packing happens in the copy, never in this checkout: `prepare` empties dist/, which the other
 * test files running meanwhile use through bin/rotor.js.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OWN = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const CONSUMER_VERSION = '7.7.7';

/** The environment of a user's shell: nothing of the npm script or tap running this file (tap's loader rides on NODE_OPTIONS). */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|tap)/i.test(key) || key === 'INIT_CWD' || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, options: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: userEnv(options.env), timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr: err && code === null ? `${stderr}\n${err.message}` : stderr });
    });
  });
}

const shown = (r: Run) => ({ code: r.code, stdout: r.stdout.slice(-4000), stderr: r.stderr.slice(-4000) });

const base = mkdtempSync(join(tmpdir(), 'rotor-package-'));
const checkout = join(base, 'rotor checkout');
const consumer = join(base, 'consumer project');
t.teardown(() => rmSync(base, { recursive: true, force: true }));

/** The working tree as a fresh clone sees it (tracked and new files, nothing ignored), node_modules shared. */
async function copyCheckout(): Promise<void> {
  const listed = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], ROOT);
  if (listed.code !== 0) throw new Error(`git ls-files: ${listed.stderr}`);
  for (const file of listed.stdout.split('\0')) {
    // Deleted in the working tree, or not a file (a node_modules symlink is not ignored by `node_modules/`).
    if (file === '' || file === 'node_modules' || !existsSync(join(ROOT, file)) || !statSync(join(ROOT, file)).isFile()) continue;
    mkdirSync(dirname(join(checkout, file)), { recursive: true });
    copyFileSync(join(ROOT, file), join(checkout, file));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));
}

let tarball = '';

t.test('npm pack builds rotor in a checkout and ships the package, no tests or sources', async (t) => {
  await copyCheckout();
  // What a developer's checkout may hold next to the shipped files: never packed.
  const strays = ['bin/.token.tmp', 'protocol/keys.json', 'dist/../rotor-data/data.mdb'];
  for (const stray of strays) {
    mkdirSync(dirname(join(checkout, stray)), { recursive: true });
    writeFileSync(join(checkout, stray), 'secret');
  }
  const packed = await run('npm', ['pack', '--json', '--pack-destination', base], checkout, { timeoutMs: 150_000 });
  t.equal(packed.code, 0, 'npm pack (with its prepare: the build) succeeds', shown(packed));
  if (packed.code !== 0) return;
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(base, info[0]!.filename);
  const files = info[0]!.files.map((f) => f.path);
  for (const wanted of [
    'package.json',
    'LICENSE',
    'README.md',
    'spec.md',
    'bin/rotor.js',
    'protocol/rotor.proto',
    'dist/index.js',
    'dist/index.d.ts',
    'dist/client/index.js',
    'dist/client/index.d.ts',
    'dist/cli/main.js',
    'dist/session/token.js.map',
    'dist/bench/child.js',
  ]) {
    t.ok(files.includes(wanted), `ships ${wanted}`);
  }
  t.same(files.filter((f) => /^(test|src|bench|scripts|\.ci)\//.test(f)), [], 'no tests, sources, bench runners or scripts');
  t.same(files.filter((f) => /(^|\/)\.token|keys\.json|rotor-data/.test(f)), [], 'no token file, key file or data next to the shipped ones');
  t.same(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), [], 'no TypeScript sources');
  const manifest = JSON.parse(readFileSync(join(checkout, 'package.json'), 'utf8')) as Record<string, unknown>;
  t.notOk('private' in manifest, 'not private');
  t.notOk('tsx' in (manifest.dependencies as Record<string, string>), 'no TypeScript loader among the run-time dependencies');
});

t.test('installed into a project of its own', async (t) => {
  if (!tarball) return t.fail('no tarball: packing failed');
  mkdirSync(consumer);
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'rotor-consumer', version: CONSUMER_VERSION, private: true, type: 'module' }, null, 2));
  // @types/node: a TypeScript user of a Node library has it; the same range rotor builds with.
  const installed = await run('npm', ['install', tarball, `@types/node@${OWN.devDependencies['@types/node']}`, '--prefer-offline', '--no-audit', '--no-fund'], consumer, { timeoutMs: 150_000 });
  t.equal(installed.code, 0, 'npm install <tarball> succeeds', shown(installed));
  if (installed.code !== 0) return;
  t.notOk(existsSync(join(consumer, 'node_modules', 'tsx')), 'no tsx installed: nothing at run time needs a TypeScript loader');
  t.notOk(existsSync(join(consumer, 'node_modules', 'typescript')), 'no typescript installed');

  t.test('plain JavaScript: serve with a user added from code, log in with the client, one request', async (t) => {
    writeFileSync(
      join(consumer, 'round-trip.mjs'),
      `import { serve, MemoryStore, addUser, RotorError, DEFAULTS } from 'rotor';
import { RotorClient, tcpConnect, AuthFailedError } from 'rotor/client';

const store = new MemoryStore();
const cheap = { scryptN: 1024, scryptR: 8, scryptP: 1 };
const alice = await addUser(store, 'alice', 'wonderland', { auth: cheap });
const bob = await addUser(store, 'bob', 'builder', { totp: true, auth: cheap });
const server = await serve({
  store,
  config: { port: 0, logLevel: 'silent' },
  app: { routes: { 'GET /hello': (req) => ({ body: 'hello, ' + req.user }) }, tasks: {} },
});
const client = new RotorClient({ connect: tcpConnect({ host: '127.0.0.1', port: server.tcp.address.port }) });
let wrongPassword;
try { await client.login('alice', 'not it'); } catch (err) { wrongPassword = err instanceof AuthFailedError ? err.code : String(err); }
await client.login('alice', 'wonderland');
const reply = await client.request('GET', '/hello');
client.close();
await server.close();
await store.close();
console.log(JSON.stringify({
  status: reply.status, body: reply.body.toString(), rotated: typeof client.token === 'string',
  wrongPassword, alice, bobUri: bob.otpauthUri, port: DEFAULTS.port, isError: new RotorError('ROTOR_E_NOT_FOUND').status,
}));
`,
    );
    const r = await run(process.execPath, ['round-trip.mjs'], consumer);
    t.equal(r.code, 0, 'runs', shown(r));
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    t.match(out, { status: 200, body: 'hello, alice', rotated: true, wrongPassword: 'ROTOR_E_AUTH_FAILED', alice: { name: 'alice' }, port: 3666, isError: 404 });
    t.notOk('otpauthUri' in (out.alice as object), 'no otpauth URI without TOTP');
    t.match(out.bobUri, /^otpauth:\/\/totp\/rotor:bob\?.*secret=[A-Z2-7]+/, 'the otpauth URI of a TOTP user');
  });

  t.test('only the exported entry points are reachable', async (t) => {
    const r = await run(process.execPath, ['--input-type=module', '-e', "await import('rotor/dist/session/token.js')"], consumer);
    t.not(r.code, 0, 'a deep import is refused');
    t.match(r.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/);
  });

  t.test('TypeScript: a strict consumer type-checks against the shipped .d.ts', async (t) => {
    writeFileSync(
      join(consumer, 'consumer.ts'),
      `import {
  serve, MemoryStore, LmdbStore, RedisStore, openStore, addUser, resolveConfig, DEFAULTS, RotorError, ERRORS, KeyRing,
  type RotorApp, type Handler, type TaskHandler, type RotorConfig, type ErrorCode, type Store, type AddedUser,
} from 'rotor';
import { RotorClient, tcpConnect, httpConnect, wsConnect, TokenReusedError, type RotorResponse, type ClientOptions } from 'rotor/client';

const hello: Handler = (req) => ({ body: \`hello, \${req.user}\`, status: req.query === '' ? undefined : 200 });
const pay: TaskHandler = async (payload, ctx) => {
  ctx.signal.throwIfAborted();
  return { body: \`paid \${String(payload)} for \${ctx.user} (\${ctx.taskId}, attempt \${ctx.attempt})\`, contentType: undefined };
};
const app: RotorApp = {
  routes: { 'GET /hello': hello, 'POST /pay': (req) => ({ defer: { task: 'pay', payload: req.body?.toString(), waitForSeconds: undefined } }) },
  tasks: { pay },
};
const config: RotorConfig = resolveConfig({ port: 0, logLevel: 'silent' });
const code: ErrorCode = 'ROTOR_E_TOKEN_REUSED';
const status: number = ERRORS[code].status + new RotorError(code).status + DEFAULTS.port;
const store: Store = await openStore('memory', { dataDir: undefined });
const totp: boolean | undefined = process.env.TOTP ? true : undefined;
const added: AddedUser = await addUser(store, 'alice', 'wonderland', { totp, auth: { scryptN: 1024 } });
const uri: string | undefined = added.otpauthUri;
const tls: { key: string; cert: string } | undefined = undefined;
const server = await serve({ store, app, config: { port: config.port }, tls, keys: KeyRing.generate((n) => Buffer.alloc(n, 1)) });
const options: ClientOptions = { connect: tcpConnect({ host: '127.0.0.1', port: server.tcp.address.port, tls: undefined }), retries: undefined };
const client = new RotorClient(options);
const reply: RotorResponse = await client.login('alice', 'wonderland', { totp: undefined });
const first: string | undefined = reply.tasks[0];
// @ts-expect-error a port is a number: the types are real, not any
tcpConnect({ port: '3666' });
console.log(status, uri, first, typeof MemoryStore, typeof LmdbStore, typeof RedisStore, typeof httpConnect, typeof wsConnect, TokenReusedError.name);
client.close();
await server.close();
`,
    );
    const r = await run(
      process.execPath,
      [TSC, '--strict', '--exactOptionalPropertyTypes', '--noUncheckedIndexedAccess', '--module', 'nodenext', '--target', 'es2022', '--skipLibCheck', 'false', '--noEmit', 'consumer.ts'],
      consumer,
    );
    t.equal(r.code, 0, 'tsc --strict --exactOptionalPropertyTypes --noUncheckedIndexedAccess --module nodenext: no errors', shown(r));
  });

  t.test('npx rotor --version prints rotor’s version, not the project’s', async (t) => {
    const r = await run('npx', ['--no', '--', 'rotor', '--version'], consumer);
    t.equal(r.code, 0, 'runs', shown(r));
    t.equal(r.stdout.trim(), OWN.version, `rotor ${OWN.version} (the project is ${CONSUMER_VERSION})`);
  });

  t.test('npx rotor bench spawns its compiled child processes (no tsx)', async (t) => {
    const r = await run('npx', ['--no', '--', 'rotor', 'bench', '--spawn', 'rotor', '--count', '100', '--warmup', '0', '--json'], consumer);
    t.equal(r.code, 0, 'runs', shown(r));
    const result = JSON.parse(r.stdout) as { ok: number; errors: Record<string, number> };
    t.ok(result.ok >= 100, `${result.ok} requests answered`);
    t.same(result.errors, {}, 'no errors');
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
    probe.once('error', reject);
  });
}

/** Resolves once something accepts on the port; rejects when the child exits first. */
async function listening(child: ChildProcess, port: number, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`rotor exited (${child.exitCode}) before listening:\n${output()}`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`rotor not listening on ${port} within 30 s:\n${output()}`);
}

t.test('a checkout under a path with a space', async (t) => {
  if (!existsSync(join(checkout, 'dist', 'cli', 'main.js'))) return t.fail('no built checkout copy: packing failed');
  t.match(checkout, / /, `the checkout is at "${checkout}"`);

  t.test('rotor serve from there (compiled): users and data in the same path, a login and a request', async (t) => {
    const data = join(checkout, 'rotor data');
    const bin = join(checkout, 'bin', 'rotor.js');
    const added = await run(process.execPath, [bin, 'user', 'add', 'alice', '--data', data], checkout, { env: { ROTOR_PASSWORD: 'wonderland' } });
    t.equal(added.code, 0, 'rotor user add', shown(added));
    const port = await freePort();
    let output = '';
    const server = spawn(process.execPath, [bin, 'serve', '--data', data, '--port', String(port), '--log-level', 'warn'], { cwd: checkout, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout.on('data', (chunk) => (output += chunk));
    server.stderr.on('data', (chunk) => (output += chunk));
    const exited = new Promise((resolve) => server.once('exit', resolve));
    t.teardown(async () => {
      if (server.exitCode === null) server.kill('SIGKILL');
      await exited;
    });
    await listening(server, port, () => output);
    const { RotorClient, tcpConnect } = (await import(pathToFileURL(join(checkout, 'dist', 'client', 'index.js')).href)) as typeof import('../../src/client/index.ts');
    const client = new RotorClient({ connect: tcpConnect({ host: '127.0.0.1', port }) });
    try {
      await client.login('alice', 'wonderland');
      const reply = await client.request('GET', '/hello');
      t.equal(reply.body.toString(), 'hello, alice', 'the example app answers');
    } finally {
      client.close();
    }
    server.kill('SIGTERM');
    await exited;
  });

  t.test('the sources there (tsx) load the token module and its schema', async (t) => {
    const script = `
      const { KeyRing, mintToken, verifyToken } = await import('./src/session/token.ts');
      const random = (n) => Buffer.alloc(n, 7);
      const keys = KeyRing.generate(random);
      const claims = { session: 'AAAAAAAAAAAAAAAAAAAAAA', generation: 3, issued: 1700000000, ttlMinutes: -1, user: 'alice' };
      console.log(JSON.stringify(verifyToken(keys, mintToken(keys, claims, random))));
    `;
    const r = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], checkout);
    t.equal(r.code, 0, 'runs', shown(r));
    t.match(JSON.parse(r.stdout || '{}'), { generation: 3, user: 'alice' }, 'a token minted and verified');
  });
});
