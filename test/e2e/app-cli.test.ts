/**
 * `rotor app …` on the embedded store (spec §12), as an operator types it: apps added (text and
 * --json), listed, shown, their instances added and removed, apps removed; what each command
 * refuses, with a reason and exit code 1; the app key printed once and found nowhere in the data
 * directory. Then `rotor serve` on that directory, and sealed sessions opened by hand over TCP
 * (GET /rotor/seal → POST /rotor/seal → POST /rotor/ack → GET /hello, each with its proof): an
 * open app's instance is registered at its first open, a listed app's only opens once added.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startOpen } from '../../src/seal/instance.ts';
import { sealProof } from '../../src/seal/proof.ts';
import { getHeader } from '../../src/wire/index.ts';
import { cli, freePort, RawConn, request, startCliServer, type Run } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-app-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, 'data');

const app = (...args: string[]) => cli('app', ...args, '--data', data);
const ok = (t: Test, run: Run, what: string): Run => {
  t.equal(run.code, 0, `${what}: ${run.stderr}`);
  return run;
};
/** A command that must fail with exit code 1, saying `reason` in one line on stderr, no stack trace. */
const refused = (t: Test, run: Run, reason: RegExp, what: string) => {
  t.equal(run.code, 1, `${what}: exit code 1`);
  t.match(run.stderr, reason, `${what}: says why`);
  t.notMatch(run.stderr, /^\s+at /m, `${what}: no stack trace`);
};

interface Added {
  id: string;
  key: string;
}
/** Every app key `add` printed: none may be in the data directory, nor in any other output. */
const keys: string[] = [];
let billing: Added;
let gate: Added;

/** Every file under `dir`, its bytes. */
function filesUnder(dir: string): Array<{ path: string; bytes: Buffer }> {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => {
      const path = join(entry.parentPath, entry.name);
      return { path, bytes: readFileSync(path) };
    });
}

/** No file of the data directory holds an app key: as printed, in its raw 32 bytes, in hex or in standard base64. */
function keysNowhere(t: Test) {
  const files = filesUnder(data);
  t.ok(files.length > 0, `the data directory has files (${files.map((file) => file.path.slice(data.length + 1)).join(', ')})`);
  for (const key of keys) {
    const raw = Buffer.from(key, 'base64url');
    t.equal(raw.length, 32, 'an app key is base64url of 32 bytes');
    const forms = [Buffer.from(key), raw, Buffer.from(raw.toString('hex')), Buffer.from(raw.toString('base64'))];
    const found = files.filter((file) => forms.some((form) => file.bytes.includes(form))).map((file) => file.path);
    t.same(found, [], 'the key is in no file of the data directory');
  }
}

t.test('apps: added (text and --json), listed, shown, their instances added and removed', async (t) => {
  const added = ok(t, await app('add', 'billing'), 'add billing');
  const id = /^app id: ([A-Za-z0-9_-]{16})$/m.exec(added.stdout)?.[1];
  const key = /^app key: ([A-Za-z0-9_-]{43})$/m.exec(added.stdout)?.[1];
  t.ok(id && key, `the id and the key, one line each: ${added.stdout}`);
  t.match(added.stdout, /shown only now/, 'saying the key is shown only now');
  t.match(added.stdout, /instances open/, 'open by default');
  billing = { id: id!, key: key! };

  const json = ok(t, await app('add', 'gate', '--instances', 'listed', '--json'), 'add gate --json');
  const parsed = JSON.parse(json.stdout);
  t.same(Object.keys(parsed).sort(), ['id', 'instances', 'key', 'name'], 'JSON: id, name, key, instances');
  t.match(parsed, { id: /^[A-Za-z0-9_-]{16}$/, name: 'gate', key: /^[A-Za-z0-9_-]{43}$/, instances: 'listed' });
  t.match(json.stderr, /shown only now/, 'the notice on stderr, JSON alone on stdout');
  gate = { id: parsed.id, key: parsed.key };
  keys.push(billing.key, gate.key);
  t.not(billing.key, gate.key, 'each app its own key');

  ok(t, await app('instance', 'add', gate.id, 'host-1.example.net'), 'instance add');
  ok(t, await app('instance', 'add', gate.id, '10.0.0.7:8443'), 'instance add, an address and port');
  const list = ok(t, await app('list'), 'list');
  t.same(list.stdout.trim().split('\n').sort(), [`${billing.id}: billing, instances open, 0 instances`, `${gate.id}: gate, instances listed, 2 instances`].sort(), 'id, name, policy, instances; one line each');

  const shown = ok(t, await app('show', gate.id), 'show');
  const lines = shown.stdout.trim().split('\n');
  t.match(lines[0], `${gate.id}: gate, instances listed, 2 instances, added `);
  t.match(lines.slice(1).sort(), [/^ {2}10\.0\.0\.7:8443: listed \S+Z, not opened yet$/, /^ {2}host-1\.example\.net: listed \S+Z, not opened yet$/]);
  const view = JSON.parse(ok(t, await app('show', gate.id, '--json'), 'show --json').stdout);
  t.match(view, { app: { id: gate.id, name: 'gate', instances: 'listed', publicKey: /^[A-Za-z0-9_-]{43}$/, createdAt: Number } });
  t.same(view.instances.map((instance: { id: string }) => instance.id).sort(), ['10.0.0.7:8443', 'host-1.example.net']);
  t.match(view.instances[0], { listed: true, addedAt: Number, firstOpenAt: null, firstAddress: null });

  const removed = ok(t, await app('instance', 'remove', gate.id, '10.0.0.7:8443'), 'instance remove');
  t.match(removed.stdout, `instance 10.0.0.7:8443 of app ${gate.id} removed`);
  t.same(JSON.parse((await app('show', gate.id, '--json')).stdout).instances.map((instance: { id: string }) => instance.id), ['host-1.example.net'], 'the other stays');

  for (const run of [list, shown, removed]) t.notOk(keys.some((k) => run.stdout.includes(k) || run.stderr.includes(k)), 'no key outside add');
  keysNowhere(t);
});

t.test('bad input is refused in one line, exit code 1, and changes nothing', async (t) => {
  const unknown = 'AAAAAAAAAAAAAAAA';
  refused(t, await app('show', unknown), new RegExp(`^rotor: no app ${unknown} \\(rotor app list shows them\\)\\n$`), 'show an unknown app');
  refused(t, await app('show', 'not/an/app/id'), /^rotor: no app not\/an\/app\/id /, 'show a malformed id');
  refused(t, await app('remove', unknown), /no app AAAAAAAAAAAAAAAA/, 'remove an unknown app');
  refused(t, await app('instance', 'add', unknown, 'host-1'), /no app AAAAAAAAAAAAAAAA/, 'instance add to an unknown app');
  refused(t, await app('instance', 'remove', gate.id, 'host-9'), new RegExp(`app ${gate.id} has no instance host-9`), 'remove an instance not there');
  refused(t, await app('instance', 'add', gate.id, 'bad/instance'), /bad instance id "bad\/instance": an instance id is 1–128 of A-Z a-z 0-9 \. _ : -/, 'a bad instance id');
  refused(t, await app('instance', 'add', gate.id, 'x'.repeat(129)), /an instance id is 1–128/, 'a too long instance id');
  refused(t, await app('add', 'no spaces'), /^rotor: an app name is 1–64 of A-Z a-z 0-9 \. _ -\n$/, 'a bad name');
  refused(t, await app('add', 'billing'), /an app named billing exists already/, 'a name taken');
  refused(t, await app('add', 'other', '--instances', 'some'), /Invalid values:[\s\S]*instances/, 'a bad policy');
  refused(t, await app('list', '--bogus'), /Unknown argument: bogus/, 'an unknown option');
  refused(t, await app('instance'), /Not enough non-option arguments/, 'instance without add or remove');
  const list = await app('list');
  t.equal(list.stdout.trim().split('\n').length, 2, 'still the two apps');
  t.match(list.stdout, `${gate.id}: gate, instances listed, 1 instance`, 'and gate its one instance');
});

t.test('rotor serve on the data directory: sealed sessions open over TCP', async (t) => {
  const port = await freePort();
  const server = await startCliServer(['serve', '--data', data, '--port', String(port), '--log-level', 'warn'], port);
  t.teardown(() => server.stop('SIGKILL'));
  const conn = await RawConn.connect(port);
  t.teardown(() => conn.destroy());

  /** GET /rotor/seal, then POST /rotor/seal: the reply and the session key (when it opened). */
  const open = async (who: Added, instance: string) => {
    const nonce = getHeader(await conn.call(request('GET', '/rotor/seal')), 'Seal-Nonce')!;
    const pending = startOpen({ app: who.id, instance, key: who.key }, nonce);
    const reply = await conn.call(request('POST', '/rotor/seal', Object.fromEntries(pending.headers)));
    const serverKey = getHeader(reply, 'Seal-Key');
    return { reply, key: serverKey === undefined ? undefined : pending.sessionKey(serverKey) };
  };
  /** Open, confirm with a proof, and read `/hello` with the next proof: its body. */
  const openAndRead = async (t: Test, who: Added, instance: string): Promise<string | undefined> => {
    const { reply, key } = await open(who, instance);
    t.equal(reply.status, 200, `the open: ${getHeader(reply, 'Error') ?? 'no error'}`);
    const token = getHeader(reply, 'Token')!;
    const nonce = getHeader(reply, 'Seal-Nonce')!;
    t.ok(token && nonce && key, 'a token, its nonce, and the session key from the server\'s Seal-Key');
    const proof = (verb: string, path: string) => sealProof(key!, nonce, verb, path, undefined);
    const ack = await conn.call(request('POST', '/rotor/ack', { Token: token, 'Seal-Proof': proof('POST', '/rotor/ack') }));
    t.same([ack.status, getHeader(ack, 'Error'), getHeader(ack, 'Token')], [200, undefined, undefined], 'the confirmation: 200, no token');
    const bare = await conn.call(request('GET', '/hello', { Token: token }));
    t.equal(getHeader(bare, 'Error'), 'ROTOR_E_SEAL_PROOF_MISSING', 'the session is sealed: no proof, no read');
    const hello = await conn.call(request('GET', '/hello', { Token: token, 'Seal-Proof': proof('GET', '/hello') }));
    t.equal(hello.status, 200, `GET /hello with its proof: ${getHeader(hello, 'Error') ?? 'no error'}`);
    t.ok(getHeader(hello, 'Token') && getHeader(hello, 'Seal-Nonce'), 'the next token and its nonce');
    return hello.body?.toString('utf8');
  };

  t.equal(await openAndRead(t, billing, 'build-7.example.net'), `hello, app:${billing.id}/build-7.example.net`, 'an open app: any instance its key signs for');
  const registered = ok(t, await app('show', billing.id), 'show billing');
  t.match(registered.stdout, /^ {2}build-7\.example\.net: registered at its first open, first open \S+Z from 127\.0\.0\.1$/m, 'registered at its first open, with when and from where');

  const notListed = (await open(gate, 'host-2.example.net')).reply;
  t.same([notListed.status, getHeader(notListed, 'Error'), getHeader(notListed, 'Token')], [403, 'ROTOR_E_INSTANCE_UNKNOWN', undefined], 'a listed app: an instance not added is refused');
  t.notMatch((await app('show', gate.id)).stdout, /host-2/, 'and not registered');
  ok(t, await app('instance', 'add', gate.id, 'host-2.example.net'), 'instance add');
  t.equal(await openAndRead(t, gate, 'host-2.example.net'), `hello, app:${gate.id}/host-2.example.net`, 'once added, it opens');
  t.match((await app('show', gate.id)).stdout, /^ {2}host-2\.example\.net: listed \S+Z, first open \S+Z from 127\.0\.0\.1$/m, 'listed, with its first open');

  ok(t, await app('instance', 'remove', gate.id, 'host-2.example.net'), 'instance remove');
  t.equal(getHeader((await open(gate, 'host-2.example.net')).reply, 'Error'), 'ROTOR_E_INSTANCE_UNKNOWN', 'removed: refused from the next open on');

  const gone = ok(t, await app('remove', billing.id), 'remove billing');
  t.match(gone.stdout, `app ${billing.id} (billing) removed`);
  t.equal(getHeader((await open(billing, 'build-7.example.net')).reply, 'Error'), 'ROTOR_E_APP_UNKNOWN', 'a removed app opens nothing');
  t.equal((await app('list')).stdout, `${gate.id}: gate, instances listed, 1 instance\n`, 'its instances gone with it');

  await server.stop();
  keysNowhere(t);
});
