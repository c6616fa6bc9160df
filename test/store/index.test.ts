import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../src/store/index.ts';

t.test('openStore names each backend', async (t) => {
  const memory = await openStore('memory');
  t.equal(memory.kind, 'memory');
  await memory.close();

  const dir = mkdtempSync(join(tmpdir(), 'rotor-open-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lmdb = await openStore('lmdb', { dataDir: join(dir, 'data'), fsync: true });
  t.equal(lmdb.kind, 'lmdb');
  await lmdb.putUser({ name: 'alice', passwordHash: 'x', createdAt: 1 });
  await lmdb.close();
  const again = await openStore(undefined, { dataDir: join(dir, 'data') });
  t.equal(again.kind, 'lmdb', 'lmdb is the default');
  t.equal((await again.loadUser('alice'))?.createdAt, 1, 'in dataDir');
  await again.close();

  await t.rejects(openStore('mongodb://localhost'), /unknown store "mongodb:\/\/localhost"/);
});
