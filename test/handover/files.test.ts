/** The peers file and the hand-over key file (spec §11): what each holds, what is refused, the key file's mode. */
import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateHandOverKeys, loadPeers, newHandOverKey, parsePeers, readHandOverKeys, spkiBase64, writeHandOverKeys } from '../../src/handover/index.ts';

const key = spkiBase64(newHandOverKey(0, 'h1').publicKey);
const peer = { name: 'b', address: 'tcp://127.0.0.1:4001', publicKeys: { h1: key }, revocations: 'http://127.0.0.1:4101/rotor/revocations' };

t.test('a peers file as the spec shows it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-peers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'peers.json'), JSON.stringify({ self: 'a', peers: [peer] }));
  const peers = loadPeers(join(dir, 'peers.json'));
  t.equal(peers.self, 'a');
  const b = peers.byName.get('b')!;
  t.match(b, { name: 'b', address: 'tcp://127.0.0.1:4001', revocations: 'http://127.0.0.1:4101/rotor/revocations' });
  t.strictSame([...b.publicKeys.keys()], ['h1']);
  t.equal(parsePeers({ self: 'a', peers: [{ name: 'b', address: 'http://127.0.0.1:8080' }] }).byName.get('b')!.publicKeys.size, 0, 'a peer that is only handed to needs no keys');
});

t.test('what a peers file may not hold', async (t) => {
  const refused: Array<[string, unknown, RegExp]> = [
    ['an unknown key at the top', { self: 'a', peers: [], selff: 'x' }, /\(top\).*selff/],
    ['an unknown key of a peer', { self: 'a', peers: [{ ...peer, adress: 'x' }] }, /peers\.0.*adress/],
    ['a bad name', { self: 'a b', peers: [] }, /self/],
    ['a peer named twice', { self: 'a', peers: [peer, peer] }, /named twice/],
    ['a peer with its own name', { self: 'b', peers: [peer] }, /own name/],
    ['an address of no carrier', { self: 'a', peers: [{ ...peer, address: 'ftp://x' }] }, /address/],
    ['a key that is no Ed25519 key', { self: 'a', peers: [{ ...peer, publicKeys: { h1: 'AAAA' } }] }, /publicKeys/],
    ['a bad key id', { self: 'a', peers: [{ ...peer, publicKeys: { H1: key } }] }, /publicKeys/],
    ['keys without a revocation list', { self: 'a', peers: [{ name: 'b', address: 'tcp://127.0.0.1:1', publicKeys: { h1: key } }] }, /needs "revocations"/],
    ['a revocation list not over HTTP', { self: 'a', peers: [{ ...peer, revocations: 'tcp://127.0.0.1:1' }] }, /revocations/],
  ];
  for (const [what, value, message] of refused) t.throws(() => parsePeers(value, 'peers.json'), { message }, what);
});

t.test('the key file: made 0600 with one key, read back, checked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-hkeys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'sub', 'handover-keys.json');
  const keys = loadOrCreateHandOverKeys(file, Date.UTC(2026, 0, 1));
  t.equal(statSync(file).mode & 0o777, 0o600, 'mode 0600');
  t.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700, 'its directory 0700');
  t.equal(keys.all.length, 1);
  t.match(keys.signing.id, /^h[0-9a-z]+$/);
  t.strictSame(Object.keys(JSON.parse(readFileSync(file, 'utf8')).keys[0]), ['id', 'privateKey', 'publicKey']);
  t.equal(loadOrCreateHandOverKeys(file).signing.id, keys.signing.id, 'an existing file is read, not replaced');

  const fresh = newHandOverKey(Date.UTC(2026, 1, 1));
  writeHandOverKeys(file, [fresh, ...keys.all]);
  const both = readHandOverKeys(file);
  t.strictSame(both.all.map((k) => k.id), [fresh.id, keys.signing.id], 'signing first');
  t.strictSame(Object.keys(both.publicKeys()), [fresh.id, keys.signing.id]);

  const entry = JSON.parse(readFileSync(file, 'utf8')).keys;
  writeFileSync(file, JSON.stringify({ keys: [{ ...entry[0], publicKey: entry[1].publicKey }] }), { mode: 0o600 });
  t.throws(() => readHandOverKeys(file), /not the private key/, 'a public key of another pair');
  writeFileSync(file, JSON.stringify({ keys: [entry[0], entry[0]] }), { mode: 0o600 });
  t.throws(() => readHandOverKeys(file), /twice/);
  writeFileSync(file, JSON.stringify({ keys: [{ ...entry[0], extra: 1 }] }), { mode: 0o600 });
  t.throws(() => readHandOverKeys(file), /is not \{"id"/);
  writeFileSync(file, JSON.stringify({ keys: [] }), { mode: 0o600 });
  t.throws(() => readHandOverKeys(file), /at least one/);
  chmodSync(file, 0o644);
  t.throws(() => readHandOverKeys(file), /lets group or others/, 'a file others may read');
});
