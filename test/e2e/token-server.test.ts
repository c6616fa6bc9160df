/**
 * `rotor token-server`, the drop-in for HaKr/token_server (note 004), spawned as a user starts
 * it and driven with fetch the way the original's README uses it: create, exchange (metadata
 * merged), delete, and HEAD /dump when -d allows it. It takes the original's flags and ranges,
 * and serves nothing but that API: no rotor paths over HTTP, no rotor frames.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, freePort, startCliServer } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-token-server-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const json = (body: unknown) => ({ headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
const api = (port: number) => ({
  create: (meta: unknown) => fetch(`http://127.0.0.1:${port}/token`, { method: 'POST', ...json({ meta }) }),
  exchange: (token: string, meta?: unknown) => fetch(`http://127.0.0.1:${port}/token`, { method: 'PUT', ...json(meta === undefined ? { token } : { token, meta }) }),
  remove: (token: string) => fetch(`http://127.0.0.1:${port}/token`, { method: 'DELETE', ...json({ token }) }),
  dump: () => fetch(`http://127.0.0.1:${port}/dump`, { method: 'HEAD' }),
  get: (path: string) => fetch(`http://127.0.0.1:${port}${path}`),
});

/** What a raw TCP client gets back for `bytes` (until the server closes, at most 64 KiB). */
function rawReply(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(bytes));
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.length > 65_536) socket.destroy();
    });
    socket.on('close', () => resolve(reply));
    socket.on('error', reject);
  });
}

// Refusals, all started now (helpers.ts runs a few at a time).
const help = cli('token-server', '--help');
const refused = Promise.all(
  [
    ['-t', '20min'],
    ['-t', '97h'],
    ['--token-lifetime', '30min 30s'],
    ['-P', '0s'],
    ['-P', '91min'],
    ['--purge-interval', 'often'],
    ['-p', '70000'],
  ].map(async (flags) => ({ flags, run: await cli('token-server', ...flags, ...(flags[0] === '-p' ? [] : ['-p', String(await freePort())])) })),
);
for (const chain of [help, refused]) chain.catch(() => {});

t.test("--help shows the original's options with their defaults", async (t) => {
  const run = await help;
  t.equal(run.code, 0, run.stderr);
  const text = run.stdout.replace(/\s+/g, ' ');
  t.match(text, /-p, --port Which port to listen on \[number\] \[default: 3666\]/);
  t.match(text, /-d, --dump allow for HEAD \/dump endpoint to log all metadata/);
  t.match(text, /-P, --purge-interval What frequency to remove expired tokens, between 1s and 90min \[string\] \[default: "1min"\]/);
  t.match(text, /-t, --token-lifetime How long does a token remain valid, between 30min and 96h \[string\] \[default: "2h"\]/);
});

t.test("values outside the original's ranges are refused at start", async (t) => {
  const expected: Record<string, RegExp> = {
    '-t 20min': /--token-lifetime must be between 30min and 96h, got 20min/,
    '-t 97h': /--token-lifetime must be between 30min and 96h, got 97h/,
    '--token-lifetime 30min 30s': /--token-lifetime must be whole minutes/,
    '-P 0s': /--purge-interval must be between 1s and 90min, got 0s/,
    '-P 91min': /--purge-interval must be between 1s and 90min, got 91min/,
    '--purge-interval often': /--purge-interval: bad duration "often"/,
    '-p 70000': /--port must be a port number/,
  };
  for (const { flags, run } of await refused) {
    const name = flags.join(' ');
    t.equal(run.code, 1, `${name}: exit 1`);
    t.match(run.stderr, expected[name], name);
  }
});

t.test("the original's create, exchange and delete, over fetch", async (t) => {
  const port = await freePort();
  const server = await startCliServer(['token-server', '-p', String(port)], port);
  t.teardown(() => server.stop('SIGKILL'));
  const { create, exchange, remove, dump, get } = api(port);

  const created = await create({ name: 'My user', year: 2022 });
  t.equal(created.status, 200);
  t.match(created.headers.get('content-type'), /^text\/plain/);
  const first = await created.text();
  t.match(first, /^[A-Za-z0-9_.-]+$/, 'POST /token: the token as text');

  const updated = await exchange(first, { period: 11 });
  t.equal(updated.status, 200);
  const body = (await updated.json()) as { Ok: { token: string; meta: unknown } };
  t.strictSame(body.Ok.meta, { name: 'My user', year: 2022, period: 11 }, 'PUT /token merges the metadata');
  t.not(body.Ok.token, first, 'and gives a new token');

  const again = (await (await exchange(body.Ok.token)).json()) as { Ok: { token: string; meta: unknown } };
  t.strictSame(again.Ok.meta, { name: 'My user', year: 2022, period: 11 }, 'PUT without meta keeps it');
  t.strictSame(await (await exchange(first)).json(), { Err: 'InvalidToken' }, 'an exchanged token is invalid');

  const other = await (await create({ name: 'Other' })).text();
  const deleted = await remove(other);
  t.equal(deleted.status, 202, 'DELETE /token: 202');
  t.strictSame(await (await exchange(other)).json(), { Err: 'InvalidToken' }, 'a deleted token is invalid');

  t.equal((await dump()).status, 404, 'HEAD /dump is off without -d, as in the original');
  for (const path of ['/rotor/ping', '/hello']) t.equal((await get(path)).status, 404, `GET ${path}: nothing but the token API`);
  const login = await fetch(`http://127.0.0.1:${port}/rotor/login`, { method: 'POST', headers: { User: 'alice', Password: 'pw' } });
  t.equal(login.status, 404, 'no rotor login over HTTP');
  t.match(await rawReply(port, 'GET /rotor/ping ROTOR/1\r\n\r\n'), /^HTTP\/1\.1 4\d\d /, 'a rotor frame gets an HTTP refusal: no rotor listener here');

  const run = await server.stop('SIGTERM');
  t.equal(run.code, 0, `SIGTERM: a clean exit (${run.stderr})`);
  const started = run.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line)).find((entry) => /^Token server listening/.test(entry.msg));
  t.equal(started?.msg, `Token server listening: Port: ${port}, Token lifetime: 2h, Purge cycle: 1min, HEAD /dump endpoint disabled`, 'it says what it runs with, as the original does');
});

t.test('-d enables HEAD /dump; --store lmdb keeps tokens across a restart', async (t) => {
  const data = join(tmp, 'data');
  const flags = (port: number) => ['token-server', '-p', String(port), '-d', '-P', '2s', '-t', '30min', '--store', 'lmdb', '--data', data];
  const port = await freePort();
  const server = await startCliServer(flags(port), port);
  t.teardown(() => server.stop('SIGKILL'));
  const first = api(port);
  const token = await (await first.create({ name: 'Durable' })).text();
  t.equal((await first.dump()).status, 202, 'HEAD /dump: 202');
  const run = await server.stop('SIGTERM');
  const dumped = run.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line)).find((entry) => entry.msg === 'DUMP');
  t.strictSame(dumped?.dump?.map((entry: { meta: unknown }) => entry.meta), [{ name: 'Durable' }], 'the dump logged the metadata');

  const port2 = await freePort();
  const restarted = await startCliServer(flags(port2), port2);
  t.teardown(() => restarted.stop('SIGKILL'));
  const body = (await (await api(port2).exchange(token)).json()) as { Ok?: { meta: unknown } };
  t.strictSame(body.Ok?.meta, { name: 'Durable' }, 'the token made before the restart exchanges after it');
});
