/**
 * Rotations/s of the embedded store: `npx tsx bench/store-lmdb.ts [sessions] [seconds]`.
 * Both durability modes, 1 / 64 / 1024 rotations in flight, on a fresh directory in /tmp.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmdbStore } from '../src/store/lmdb.ts';
import { createSessions, formatRotation, rotate } from './store-rotations.ts';

const sessions = Number(process.argv[2] ?? 100_000);
const seconds = Number(process.argv[3] ?? 3);

for (const fsync of [false, true]) {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-bench-lmdb-'));
  try {
    const store = await LmdbStore.open(dir, { fsync });
    const mode = fsync ? 'lmdb fsync' : 'lmdb default';
    const { ids, perSecond } = await createSessions(store, sessions);
    console.log(`${mode.padEnd(22)} created ${sessions.toLocaleString('en')} sessions: ${Math.round(perSecond).toLocaleString('en')}/s`);
    for (const inFlight of [1, 64, 1024]) console.log(formatRotation(mode, await rotate(store, ids, inFlight, seconds)));
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
