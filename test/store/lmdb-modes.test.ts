/**
 * The embedded store's files hold scrypt password hashes, TOTP secrets and every session:
 * the directory rotor creates is 0700 and data.mdb / lock.mdb are 0600, whatever the umask,
 * and files an older rotor left 0644 are tightened when the store opens.
 */
import t from 'tap';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmdbStore } from '../../src/store/lmdb.ts';

const base = mkdtempSync(join(tmpdir(), 'rotor-lmdb-modes-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));

const FILES = ['data.mdb', 'lock.mdb'];
const modeOf = (path: string): string => `0${(statSync(path).mode & 0o777).toString(8)}`;

// umask 0 takes nothing away: the modes seen are exactly the ones rotor asks for.
const umask = process.umask(0);
t.teardown(() => process.umask(umask));

t.test('a new store: its directory (and the missing parent) 0700, data.mdb and lock.mdb 0600', async (t) => {
  const dir = join(base, 'parent', 'store');
  const store = await LmdbStore.open(dir);
  await store.close();
  t.equal(modeOf(dir), '0700', 'the store directory');
  t.equal(modeOf(join(base, 'parent')), '0700', 'the parent it had to create');
  for (const file of FILES) t.equal(modeOf(join(dir, file)), '0600', file);
});

t.test('store files left 0644 are made 0600 when the store opens; an existing directory is left alone', async (t) => {
  const dir = join(base, 'old');
  await (await LmdbStore.open(dir)).close();
  chmodSync(dir, 0o750);
  for (const file of FILES) chmodSync(join(dir, file), 0o644);
  const store = await LmdbStore.open(dir);
  await store.close();
  for (const file of FILES) t.equal(modeOf(join(dir, file)), '0600', file);
  t.equal(modeOf(dir), '0750', "the operator's directory mode (rotor serve warns about it)");
});

t.test('a umask that takes the owner\'s bits too still gives 0700 and 0600 (rotor chmods what it creates)', async (t) => {
  process.umask(0o277);
  t.teardown(() => process.umask(0));
  const dir = join(base, 'strict-umask');
  const store = await LmdbStore.open(dir);
  await store.close();
  t.equal(modeOf(dir), '0700', 'the store directory (0500 by the umask alone)');
  for (const file of FILES) t.equal(modeOf(join(dir, file)), '0600', `${file} (0400 by the umask alone)`);
});
