/**
 * `rotor keys list | add | retire --hand-over` (spec §11 "Hand-over") as an operator types them:
 * the file written atomically and 0600, the signing key refused for retirement, the last key
 * too, never a private key in any output; and a running HandOver made with `keyFile` taking the
 * new key from its next re-read, without a restart.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HandOver, parsePeers, readHandOverKeys, spkiBase64 } from '../../src/handover/index.ts';
import { cli, type Run } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-handover-keys-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, 'data');
const runs: Run[] = [];
const keys = async (...args: string[]): Promise<Run> => {
  const run = await cli('keys', ...args, '--data', data);
  runs.push(run);
  return run;
};
const file = join(data, 'handover-keys.json');
const privateKeys = new Set<string>();
const remember = () => {
  for (const key of readHandOverKeys(file).all) privateKeys.add(key.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'));
};

t.test('list, add, retire with --hand-over on <data>/handover-keys.json', async (t) => {
  const none = await keys('list', '--hand-over');
  t.equal(none.code, 0, none.stderr);
  t.match(none.stdout, /no hand-over keys in .*handover-keys\.json yet/);

  const first = await keys('add', '--hand-over');
  t.equal(first.code, 0, first.stderr);
  const a = /added hand-over key (h[a-z0-9]+) to .*: it signs once the server restarts or reloads the file/.exec(first.stdout)?.[1];
  t.ok(a, first.stdout);
  t.equal(statSync(file).mode & 0o777, 0o600, 'made 0600');
  remember();
  t.strictSame(readHandOverKeys(file).all.map((key) => key.id), [a], 'no file: the fresh key alone');

  const lonely = await keys('retire', '--hand-over', a!);
  t.equal(lonely.code, 1);
  t.match(lonely.stderr, new RegExp(`${a} is the only hand-over key`));

  const second = await keys('add', '--hand-over');
  t.equal(second.code, 0, second.stderr);
  const b = new RegExp(`added hand-over key (h[a-z0-9]+) to .*: it is published in the revocation list once the server reloads the file, and signs once promoted`).exec(second.stdout)?.[1];
  t.ok(b, second.stdout);
  t.not(b, a, 'a fresh id even within the same second');
  remember();
  const held = readHandOverKeys(file);
  t.strictSame(held.all.map((key) => key.id), [a, b], 'the new key last: published, signing nothing yet');
  t.equal(statSync(file).mode & 0o777, 0o600, 'still 0600 after the rename');
  t.strictSame(readdirSync(data).filter((name) => name.endsWith('.tmp')), [], 'no temporary file left');

  const list = await keys('list', '--hand-over');
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout.trim().split('\n'), [new RegExp(`^${a} +signing ${spkiBase64(held.get(a!)!.publicKey).replace(/[+/]/g, '\\$&')}$`), new RegExp(`^${b} +listed `)]);
  const json = await keys('list', '--hand-over', '--json');
  t.equal(json.code, 0, json.stderr);
  t.strictSame(
    JSON.parse(json.stdout),
    held.all.map((key) => ({ id: key.id, signing: key.id === a, publicKey: spkiBase64(key.publicKey) })),
  );

  const promote = await keys('promote', '--hand-over', b!);
  t.equal(promote.code, 0, promote.stderr);
  t.match(promote.stdout, new RegExp(`hand-over key ${b} signs in .* \\(${a} stops signing and still verifies\\)`));
  t.strictSame(readHandOverKeys(file).all.map((key) => key.id), [b, a], 'promoted: first, it signs');
  const again = await keys('promote', '--hand-over', b!);
  t.equal(again.code, 1);
  t.match(again.stderr, new RegExp(`${b} signs already`));

  const signing = await keys('retire', '--hand-over', b!);
  t.equal(signing.code, 1);
  t.match(signing.stderr, new RegExp(`${b} is the signing hand-over key`));
  const unknown = await keys('retire', '--hand-over', 'hzzz');
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /no hand-over key hzzz/);

  const retired = await keys('retire', '--hand-over', a!);
  t.equal(retired.code, 0, retired.stderr);
  t.match(retired.stdout, new RegExp(`retired hand-over key ${a} .*\\(${b} signs\\)`));
  t.strictSame(readHandOverKeys(file).all.map((key) => key.id), [b]);
  t.equal(statSync(file).mode & 0o777, 0o600);
});

t.test('--hand-over-keys names another file; one others can read is refused', async (t) => {
  const other = join(tmp, 'elsewhere', 'keys.json');
  const added = await keys('add', '--hand-over', '--hand-over-keys', other);
  t.equal(added.code, 0, added.stderr);
  t.equal(readHandOverKeys(other).all.length, 1);
  const list = await keys('list', '--hand-over', '--hand-over-keys', other);
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, new RegExp(`^${readHandOverKeys(other).signing.id} +signing`));
  for (const key of readHandOverKeys(other).all) privateKeys.add(key.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'));
  const open = join(tmp, 'open.json');
  writeFileSync(open, '{"keys": []}', { mode: 0o644 });
  const refused = await keys('list', '--hand-over', '--hand-over-keys', open);
  t.equal(refused.code, 1);
  t.match(refused.stderr, /lets group or others read or change it/);
});

t.test('a HandOver made with keyFile takes the added key at its next re-read', async (t) => {
  const keyFile = join(tmp, 'running.json');
  t.equal((await keys('add', '--hand-over', '--hand-over-keys', keyFile)).code, 0);
  const peers = parsePeers({ self: 'a', peers: [] });
  const handOver = new HandOver({ peers, keys: readHandOverKeys(keyFile), keyFile });
  const before = handOver.keys.signing.id;
  t.equal(handOver.reloadKeys(), false, 'nothing changed: nothing re-read');
  const added = await keys('add', '--hand-over', '--hand-over-keys', keyFile);
  t.equal(added.code, 0, added.stderr);
  t.equal(handOver.reloadKeys(), true);
  t.equal(handOver.keys.signing.id, before, 'the added key is published, not signing');
  const fresh = readHandOverKeys(keyFile).all[1].id;
  t.strictSame(Object.keys(handOver.keys.publicKeys()), [before, fresh], 'both keys in the revocation list');
  t.equal((await keys('promote', '--hand-over', fresh, '--hand-over-keys', keyFile)).code, 0);
  t.equal(handOver.reloadKeys(), true);
  t.equal(handOver.keys.signing.id, fresh, 'promoted, it signs at the next re-read');
  for (const key of handOver.keys.all) privateKeys.add(key.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'));
  writeFileSync(keyFile, 'not json', { mode: 0o600 });
  t.throws(() => handOver.reloadKeys(), /not JSON/);
  t.strictSame(Object.keys(handOver.keys.publicKeys()).length, 2, 'a bad file leaves the keys as they were');
  const fixed = new HandOver({ peers, keys: handOver.keys });
  t.equal(fixed.reloadKeys(), false, 'no keyFile: never re-read');
});

t.test('no private key in any output', async (t) => {
  t.ok(privateKeys.size >= 4);
  const shown = runs.map((run) => run.stdout + run.stderr).join('\n');
  for (const secret of privateKeys) {
    t.notOk(shown.includes(secret), 'base64 PKCS#8 not shown');
    // The raw 32-byte seed ends the PKCS#8 DER: not in any encoding either.
    const seed = Buffer.from(secret, 'base64').subarray(-32);
    for (const encoding of ['base64', 'base64url', 'hex'] as const) t.notOk(shown.includes(seed.toString(encoding)), `seed not shown as ${encoding}`);
  }
});
