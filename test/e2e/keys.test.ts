/**
 * `rotor keys list | add | promote | retire` on the embedded store (spec §11), as an operator
 * types them — never a secret on the screen — and `rotor serve` refusing to start with a key file
 * that does not unwrap the store's ring.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readKeyFile } from '../../src/keys/file.ts';
import type { KeyRingRecord } from '../../src/keys/home.ts';
import { unwrapSecret } from '../../src/keys/wrap.ts';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { accepts } from './processes.ts';
import { cli, freePort, startCliServer, type Run } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-keys-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, 'data');
const keyFile = join(tmp, 'secrets', 'keys.json');
const on = ['--data', data, '--key-file', keyFile];
const runs: Run[] = [];
const keys = async (...args: string[]): Promise<Run> => {
  const run = await cli('keys', ...args, ...on);
  runs.push(run);
  return run;
};
const lines = (run: Run) => run.stdout.trim().split('\n');

/** The ring as stored, and its secrets unwrapped with the key file. */
async function stored(): Promise<{ ring: KeyRingRecord; secrets: Buffer[] }> {
  const store = await LmdbStore.open(data);
  try {
    const ring = (await store.loadRecord<KeyRingRecord>('keyring', 'mac'))!.value;
    const { wrap } = readKeyFile(keyFile);
    return { ring, secrets: ring.keys.map((key) => unwrapSecret(wrap, key.id, key.wrapped)) };
  } finally {
    await store.close();
  }
}

const seen: KeyRingRecord['keys'][number][] = [];
const secretsSeen: Buffer[] = [];
async function remember(): Promise<KeyRingRecord> {
  const { ring, secrets } = await stored();
  seen.push(...ring.keys);
  secretsSeen.push(...secrets);
  return ring;
}

t.test('list, add, promote, retire', async (t) => {
  const empty = await keys('list');
  t.equal(empty.code, 0, empty.stderr);
  t.match(empty.stdout, /no key ring in the lmdb store yet/);

  const added = await keys('add');
  t.equal(added.code, 0, added.stderr);
  const next = /added (k[a-z0-9]+) \(next\): it may sign in 60 s \(rotor keys promote \1\)/.exec(added.stdout)?.[1];
  t.ok(next, added.stdout);
  const ring = await remember();
  const first = ring.keys.find((key) => key.state === 'signing')!.id;
  t.strictSame(ring.keys.map((key) => [key.id, key.state]), [[first, 'signing'], [next, 'next']], 'a store without a ring got one, then the next key');

  const list = await keys('list');
  t.equal(list.code, 0, list.stderr);
  t.match(lines(list), [new RegExp(`^${first} +signing +added \\d+ s ago, signing for \\d+ s$`), new RegExp(`^${next} +next +added \\d+ s ago, next for \\d+ s$`)]);

  const early = await keys('promote', next!);
  t.equal(early.code, 1, 'too early');
  t.match(early.stderr, new RegExp(`rotor: ${next} has been next for \\d+ s, less than 60 s \\(twice keys.reloadSeconds\\).*--now`));
  const promoted = await keys('promote', next!, '--now');
  t.equal(promoted.code, 0, promoted.stderr);
  t.match(promoted.stdout, new RegExp(`^${next} signs; ${first} is retiring, retireAt \\d{4}-\\d\\d-\\d\\dT`));
  const after = await remember();
  const retireAt = after.keys.find((key) => key.id === first)!.retireAt!;
  t.ok(Math.abs(retireAt - Date.now() - (120 * 60 + 60) * 1000) < 60_000, 'retireAt: the token lifetime (120 min) and the skew (60 s) from now');
  t.match(lines(await keys('list')), [new RegExp(`^${first} +retiring .*retireAt ${new Date(retireAt).toISOString()} \\(in 2 h\\)$`), new RegExp(`^${next} +signing`)]);

  const signing = await keys('retire', next!);
  t.equal(signing.code, 1);
  t.match(signing.stderr, /is the signing key: promote another first/);
  const later = await keys('retire', first);
  t.equal(later.code, 0, later.stderr);
  t.match(later.stdout, `${first} is dropped at ${new Date(retireAt).toISOString()}`);
  const now = await keys('retire', first, '--now');
  t.equal(now.code, 0, now.stderr);
  t.match(now.stdout, `${first} dropped: nodes refuse its tokens from their next reload`);
  const json = await keys('list', '--json');
  t.match(JSON.parse(json.stdout), [{ id: next, state: 'signing', retireAt: null }]);
  t.notMatch(json.stdout, /wrapped|secret/, 'no secret, wrapped or not');
  const unknown = await keys('promote', 'k0');
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /no key k0 in the ring/);
  const memory = await cli('keys', 'list', '--store', 'memory');
  t.equal(memory.code, 1);
  t.match(memory.stderr, /a memory store's key ring lives only inside its server/);

  // Not one secret on the screen: not in base64, base64url or hex, nor wrapped.
  const shown = runs.map((run) => run.stdout + run.stderr).join('\n');
  for (const secret of secretsSeen) for (const spelling of [secret.toString('base64'), secret.toString('base64url'), secret.toString('hex')]) t.notOk(shown.includes(spelling), 'a secret never shown');
  for (const key of seen) t.notOk(shown.includes(key.wrapped.slice(0, 24)), `${key.id}'s wrapped secret never shown`);
  t.notOk(shown.includes(readFileSync(keyFile, 'utf8').slice(10, 40)), 'nor the wrapping key');
});

t.test('rotor serve with another key file refuses to start; with the right one it serves', async (t) => {
  const port = await freePort();
  const other = join(tmp, 'other', 'keys.json');
  const refused = await cli('serve', '--data', data, '--key-file', other, '--port', String(port), '--key-rotation', '24h');
  t.equal(refused.code, 1, 'exit 1');
  t.match(refused.stderr, new RegExp(`rotor: the key file ${other} cannot unwrap the key ring in the lmdb store \\(key k[a-z0-9]+ does not unwrap with this wrapping key\\): every node on one store needs the same wrapping key`));
  t.notMatch(refused.stdout, /rotor is listening/, 'nothing listened');
  t.equal(await accepts(port), false);

  const good = await startCliServer(['serve', ...on, '--port', String(port), '--key-rotation', '24h', '--log-level', 'warn'], port);
  const run = await good.stop();
  t.equal(run.code, 0, run.stderr);
});
