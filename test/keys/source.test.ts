/**
 * Where the key ring lives (spec §11): secrets wrapped with AES-256-GCM (a wrong wrapping key, a
 * changed byte or another key's id does not unwrap), the store's record and the LMDB file hold no
 * secret in the clear, the key file in both formats, a node whose wrapping key does not unwrap the
 * store's ring refuses to start, many nodes rotate the ring once, a live KeyRing changes in place,
 * and serve()'s rules for a server without keys.
 */
import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { resolveConfig, type RotorConfig } from '../../src/config/defaults.ts';
import { configFromArgs, serveOptions } from '../../src/cli/commands/serve.ts';
import { loadOrCreateKeyFile, readKeyFile, type KeyMaterial } from '../../src/keys/file.ts';
import { changeRing, storeHome, type KeyRingRecord } from '../../src/keys/home.ts';
import { addKey } from '../../src/keys/ring.ts';
import { KeyRingError, KeyRingSource } from '../../src/keys/source.ts';
import { UnwrapError, unwrapSecret, wrapSecret } from '../../src/keys/wrap.ts';
import { silentLogger } from '../../src/log/index.ts';
import { serve } from '../../src/server/index.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing, mintToken, verifyToken } from '../../src/session/token.ts';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { Store } from '../../src/store/types.ts';
import { textLog } from '../ops/helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'rotor-keys-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const T0 = Date.UTC(2030, 0, 1);
const HOUR = 3_600_000;
const random = seededRandom(11);
const wrapA = Buffer.alloc(32, 0xa1);
const wrapB = Buffer.alloc(32, 0xb2);
const material = (wrap: Buffer, seed: KeyMaterial['seed'] = []): KeyMaterial => ({ wrap, seed });
const config = (keys: Partial<RotorConfig['keys']> = {}): RotorConfig => resolveConfig({ session: { tokenTtlMinutes: 10 }, keys: { rotationHours: 1, ...keys } });
const claims = { session: Buffer.alloc(16, 1).toString('base64url'), generation: 1, issued: T0 / 1000, ttlMinutes: 10, user: 'u' };

function open(store: Store, wrap: Buffer, clock: { now: number }, options: { seed?: KeyMaterial['seed']; keys?: Partial<RotorConfig['keys']> } = {}) {
  return KeyRingSource.open({ home: storeHome(store), material: material(wrap, options.seed), config: config(options.keys), log: silentLogger(), now: () => clock.now, random });
}

/** Every way a secret could be written out in the clear. */
const spellings = (secret: Buffer) => [secret.toString('base64'), secret.toString('base64url'), secret.toString('hex'), secret.toString('base64').slice(0, 20)];

t.test('wrap and unwrap: AES-256-GCM, the key id as associated data', async (t) => {
  const secret = random(32);
  const wrapped = wrapSecret(wrapA, 'k1', secret);
  t.strictSame(unwrapSecret(wrapA, 'k1', wrapped), secret, 'round trip');
  t.not(wrapSecret(wrapA, 'k1', secret), wrapped, 'a fresh IV every time');
  t.equal(Buffer.from(wrapped, 'base64').length, 12 + 32 + 16, 'IV, ciphertext, tag');
  t.throws(() => unwrapSecret(wrapB, 'k1', wrapped), UnwrapError, 'another wrapping key');
  t.throws(() => unwrapSecret(wrapA, 'k2', wrapped), UnwrapError, "another key's id");
  const bytes = Buffer.from(wrapped, 'base64');
  for (const [where, at] of [['IV', 0], ['ciphertext', 20], ['tag', bytes.length - 1]] as const) {
    const tampered = Buffer.from(bytes);
    tampered[at] ^= 1;
    t.throws(() => unwrapSecret(wrapA, 'k1', tampered.toString('base64')), UnwrapError, `a changed bit in the ${where}`);
  }
  t.throws(() => unwrapSecret(wrapA, 'k1', bytes.subarray(0, 20).toString('base64')), UnwrapError, 'cut short');
  t.throws(() => wrapSecret(Buffer.alloc(16), 'k1', secret), /32 bytes/);
});

t.test('the store holds the ring with every secret wrapped: no secret in the clear, in the record or the LMDB file', async (t) => {
  const clock = { now: T0 };
  const memory = new MemoryStore();
  const source = await open(memory, wrapA, clock);
  clock.now += 2 * HOUR;
  await source.refresh(); // a rotation adds a key: two secrets now
  const entry = await memory.loadRecord<KeyRingRecord>('keyring', 'mac');
  const json = JSON.stringify(entry);
  t.equal(entry?.value.keys.length, 2);
  for (const id of source.ring.ids) {
    const secret = source.ring.secret(id)!;
    for (const spelling of spellings(secret)) t.notOk(json.includes(spelling), `${id}'s secret is nowhere in the record (${spelling.slice(0, 6)}…)`);
  }
  t.match(entry?.value, { format: 1, keys: [{ id: source.ring.signing.id, state: 'signing', retireAt: null, wrapped: String }, { state: 'next' }] });

  const lmdbDir = join(dir, 'lmdb-at-rest');
  const lmdb = await LmdbStore.open(lmdbDir);
  const onDisk = await open(lmdb, wrapA, clock);
  const secret = onDisk.ring.signing.secret;
  await lmdb.close();
  for (const file of readdirSync(lmdbDir)) {
    const bytes = readFileSync(join(lmdbDir, file));
    t.equal(bytes.indexOf(secret), -1, `${file}: not the raw secret`);
    for (const spelling of spellings(secret)) t.equal(bytes.indexOf(spelling), -1, `${file}: not ${spelling.slice(0, 6)}…`);
  }
});

t.test('a node whose wrapping key does not unwrap the ring refuses to start, and writes nothing', async (t) => {
  const clock = { now: T0 };
  const store = new MemoryStore();
  const a = await open(store, wrapA, clock);
  const before = await store.loadRecord('keyring', 'mac');
  clock.now += 2 * HOUR; // a rotation would be due: the refused node must not do it
  await t.rejects(open(store, wrapB, clock), { name: 'KeyRingError', message: /this wrapping key cannot unwrap the key ring in the memory store \(key k\w+ does not unwrap with this wrapping key\): every node on one store needs the same wrapping key/ });
  t.strictSame(await store.loadRecord('keyring', 'mac'), before, 'the ring is as it was');
  t.ok(await open(store, wrapA, clock), 'the right wrapping key opens it');
  t.equal(a.ring.ids.length, 1);

  // A key planted under another wrapping key (a `keys add` with the wrong key file, by hand): a running node keeps what it has.
  await changeRing(storeHome(store), (ring) => addKey(ring!, 'kplanted', wrapSecret(wrapB, 'kplanted', random(32)), clock.now));
  const signing = a.ring.signing.id;
  await t.rejects(a.refresh(), KeyRingError);
  t.equal(a.ring.signing.id, signing, 'the live ring is kept');
  t.notOk(a.ring.ids.includes('kplanted'));
});

t.test('many nodes on one store rotate it once; every node follows; a dropped key is refused', async (t) => {
  const clock = { now: T0 };
  const store = new MemoryStore();
  const nodes = await Promise.all([1, 2, 3].map(() => open(store, wrapA, clock)));
  t.equal(new Set(nodes.map((node) => node.ring.signing.id)).size, 1, 'one ring: the first writes it, the others read it');
  const first = nodes[0].ring.signing.id;
  const token = mintToken(nodes[0].ring, claims, random);
  clock.now += HOUR;
  await Promise.all(nodes.map((node) => node.refresh()));
  t.equal((await store.loadRecord<KeyRingRecord>('keyring', 'mac'))?.value.keys.length, 2, 'one next key, not three');
  t.ok(nodes.every((node) => node.ring.ids.length === 2 && node.ring.signing.id === first), 'known to every node, signing on none');
  clock.now += 60_000;
  await Promise.all(nodes.map((node) => node.refresh()));
  const second = nodes[1].ring.signing.id;
  t.not(second, first, 'promoted');
  t.ok(nodes.every((node) => node.ring.signing.id === second), 'by one node, followed by all');
  const stored = (await store.loadRecord<KeyRingRecord>('keyring', 'mac'))!.value;
  const retiring = stored.keys.find((key) => key.id === first)!;
  t.equal(retiring.state, 'retiring');
  t.equal(retiring.retireAt, clock.now + 10 * 60_000 + 60_000, 'retireAt: the token lifetime and the skew after it stopped signing');
  clock.now = retiring.retireAt! - 1;
  await nodes[2].refresh();
  t.ok(verifyToken(nodes[2].ring, token), 'a token of the retiring key verifies until retireAt');
  clock.now = retiring.retireAt!;
  await nodes[2].refresh();
  t.throws(() => verifyToken(nodes[2].ring, token), { code: 'ROTOR_E_TOKEN_INVALID' }, 'and not from then on');
  t.strictSame((await store.loadRecord<KeyRingRecord>('keyring', 'mac'))!.value.keys.map((key) => key.id), [second], 'dropped from the store too');
});

t.test('a live KeyRing changes in place; a bad ring leaves it as it was', async (t) => {
  const k1 = { id: 'k1', secret: Buffer.alloc(32, 1) };
  const k2 = { id: 'k2', secret: Buffer.alloc(32, 2) };
  const ring = new KeyRing([k1]);
  const held = ring.secret('k1');
  const byK1 = mintToken(ring, claims, random);
  ring.replace([k1, { ...k2 }], 'k2');
  t.equal(ring.signing.id, 'k2');
  t.equal(ring.secret('k1'), held, 'an unchanged secret keeps its Buffer (and its HMAC state)');
  t.ok(verifyToken(ring, byK1), 'k1 still verifies');
  t.throws(() => ring.replace([k1], 'k2'), /signing key k2 is not in the ring/);
  t.throws(() => ring.replace([k1, k1], 'k1'), /twice/);
  t.throws(() => ring.replace([{ id: 'k3', secret: Buffer.alloc(8) }], 'k3'), /shorter than 32/);
  t.equal(ring.signing.id, 'k2', 'unchanged after a refused replace');
  t.strictSame(ring.ids, ['k1', 'k2']);
  ring.replace([k2], 'k2');
  t.throws(() => verifyToken(ring, byK1), { code: 'ROTOR_E_TOKEN_INVALID' }, 'a key gone: its tokens are refused');
});

t.test('the background reload: a change by another node reaches this one within keys.reloadSeconds', async (t) => {
  const clock = { now: T0 };
  const store = new MemoryStore();
  const node = await open(store, wrapA, clock, { keys: { reloadSeconds: 1, skewSeconds: 1, rotationHours: 0 } });
  node.start();
  t.teardown(() => node.stop());
  await changeRing(storeHome(store), (ring) => addKey(ring!, 'kother', wrapSecret(wrapA, 'kother', random(32)), clock.now));
  const deadline = Date.now() + 10_000;
  while (!node.ring.ids.includes('kother') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(node.ring.ids.includes('kother'), 'picked up in the background');
});

t.test('the key file: {"wrap"}, made 0600 when missing; the 0.1 format read as it is', async (t) => {
  const file = join(dir, 'made', 'keys.json');
  const made = loadOrCreateKeyFile(file, random);
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'made')).mode & 0o777, 0o700);
  t.strictSame(Object.keys(JSON.parse(readFileSync(file, 'utf8'))), ['wrap']);
  t.strictSame(loadOrCreateKeyFile(file, random).wrap, made.wrap, 'read again, not replaced');
  t.equal(made.seed.length, 0);

  const legacy = join(dir, 'legacy.json');
  const old = [{ id: 'k1', secret: Buffer.alloc(32, 5) }, { id: 'k0', secret: Buffer.alloc(32, 6) }];
  const text = JSON.stringify(old.map((key) => ({ id: key.id, secret: key.secret.toString('base64') })));
  writeFileSync(legacy, text, { mode: 0o600 });
  const copy = join(dir, 'legacy-copy.json');
  writeFileSync(copy, text, { mode: 0o600 });
  const read = readKeyFile(legacy);
  t.equal(read.legacy, true);
  t.strictSame(read.seed, old);
  t.strictSame(readKeyFile(copy).wrap, read.wrap, 'every node with a copy of the 0.1 file derives the same wrapping key');
  t.equal(readFileSync(legacy, 'utf8'), text, 'the 0.1 file is left as it was');

  // A 0.1 server's tokens stay good on the ring the file seeds; its other key retires.
  const byOld = mintToken(new KeyRing(old), claims, random);
  const clock = { now: T0 };
  const store = new MemoryStore();
  const seeded = await KeyRingSource.open({ home: storeHome(store), material: read, config: config(), log: silentLogger(), now: () => clock.now, random });
  t.ok(verifyToken(seeded.ring, byOld), 'a token of the 0.1 signing key verifies');
  t.equal(seeded.ring.signing.id, 'k1', 'k1 keeps signing');
  t.match((await store.loadRecord<KeyRingRecord>('keyring', 'mac'))?.value.keys, [{ id: 'k1', state: 'signing' }, { id: 'k0', state: 'retiring', retireAt: T0 + 11 * 60_000 }]);
  await t.rejects(open(store, wrapA, clock), KeyRingError, 'a node with another key file refuses to start on it');

  const open0644 = join(dir, 'open.json');
  writeFileSync(open0644, JSON.stringify({ wrap: wrapA.toString('base64') }));
  chmodSync(open0644, 0o644);
  t.throws(() => readKeyFile(open0644), /mode 0644 lets group or others read or change it: run chmod 600/);
  const bad = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content, { mode: 0o600 });
    return path;
  };
  t.throws(() => readKeyFile(bad('short.json', JSON.stringify({ wrap: Buffer.alloc(16).toString('base64') }))), /"wrap" must be base64 of 32 bytes, it holds 16/);
  t.throws(() => readKeyFile(bad('other.json', '{"key": 1}')), /expected \{"wrap"/);
  t.throws(() => readKeyFile(bad('broken.json', '{')), /not JSON/);
  t.throws(() => readKeyFile(bad('empty.json', '[]')), /no keys in it/);
  const withKeys = readKeyFile(bad('with-keys.json', JSON.stringify({ wrap: wrapA.toString('base64'), keys: [{ id: 'k7', secret: Buffer.alloc(32, 7).toString('base64') }] })));
  t.strictSame(withKeys.seed.map((key) => key.id), ['k7'], 'the new format may carry keys that seed a store without a ring');
});

t.test('serve(): keys from the store; without keys a durable store is refused unless ephemeralKeys, the memory store warns', async (t) => {
  const base = { app: { routes: {}, tasks: {} }, config: { port: 0, logLevel: 'silent' } };
  const lmdb = await LmdbStore.open(join(dir, 'serve-lmdb'));
  t.teardown(() => lmdb.close());
  await t.rejects(serve({ ...base, store: lmdb }), /serve\(\) without keys on the lmdb store: its MAC keys would die with this process.*ephemeralKeys: true/);
  const ephemeral = await serve({ ...base, store: lmdb, ephemeralKeys: true, log: silentLogger() });
  t.equal(await lmdb.loadRecord('keyring', 'mac'), undefined, 'ephemeral keys stay out of the store');
  await ephemeral.close();

  const withKeys = await serve({ ...base, store: lmdb, keys: material(wrapA), log: silentLogger() });
  t.ok(withKeys.keySource, 'a key source');
  t.ok(await lmdb.loadRecord('keyring', 'mac'), 'the ring is in the store');
  const signing = withKeys.keySource!.ring.signing.id;
  await withKeys.close();
  const again = await serve({ ...base, store: lmdb, keys: material(wrapA), log: silentLogger() });
  t.equal(again.keySource!.ring.signing.id, signing, 'the next start signs with the same key');
  await again.close();
  await t.rejects(serve({ ...base, store: lmdb, keys: material(wrapB), log: silentLogger() }), KeyRingError, 'another wrapping key: refused before anything listens');

  const warned = textLog('warn');
  const memory = await serve({ ...base, config: { port: 0 }, store: new MemoryStore(), log: warned.log });
  await memory.close();
  t.match(warned.lines(), [{ level: 40, msg: /serve\(\) without keys: the MAC keys live in this process only/ }]);
  const fixed = new KeyRing([{ id: 'k1', secret: Buffer.alloc(32, 1) }]);
  const given = await serve({ ...base, store: lmdb, keys: fixed, log: silentLogger() });
  t.equal(given.keySource, undefined, 'a KeyRing given: fixed keys, as before');
  t.equal(given.rotor.config.keys.reloadSeconds, 30);
  await given.close();
});

t.test('config: keys.* settings, --key-rotation, and skew no shorter than a reload', async (t) => {
  const fromFlags = async (argv: string[]) =>
    configFromArgs(
      await serveOptions(yargs(argv))
        .strict()
        .exitProcess(false)
        .fail((message, err) => {
          throw err ?? new Error(message);
        })
        .parseAsync(),
      {},
    );
  t.strictSame(resolveConfig().keys, { rotationHours: 0, reloadSeconds: 30, skewSeconds: 60 });
  t.equal((await fromFlags(['--key-rotation', '24h'])).keys.rotationHours, 24);
  t.equal((await fromFlags(['--key-rotation', '7d'])).keys.rotationHours, 168);
  t.equal((await fromFlags(['--keys-rotation-hours', '12'])).keys.rotationHours, 12);
  await t.rejects(fromFlags(['--key-rotation', '90min']), /--key-rotation: "90min" is not a whole number of hours/);
  await t.rejects(fromFlags(['--key-rotation', '24h', '--keys-rotation-hours', '2']), /both set keys.rotationHours/);
  t.throws(() => resolveConfig({ keys: { reloadSeconds: 90 } }), /keys.skewSeconds must be at least keys.reloadSeconds \(90\), got 60/);
  t.equal(resolveConfig({ keys: { reloadSeconds: '2min', skewSeconds: '5min' } as never }).keys.skewSeconds, 300);
});
