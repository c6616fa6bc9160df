import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { storeSuite } from './suite.ts';

const base = mkdtempSync(join(tmpdir(), 'rotor-lmdb-'));
let n = 0;
let last = '';

storeSuite(t, 'lmdb', {
  open: async () => LmdbStore.open((last = join(base, `db${++n}`))),
  reopen: async () => LmdbStore.open(last),
  cleanup: async () => rmSync(base, { recursive: true, force: true }),
});
