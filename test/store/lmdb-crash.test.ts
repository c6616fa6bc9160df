/**
 * kill -9 right after commits resolved: every write whose promise resolved must be there when
 * the store is opened again, in both durability modes (one writer process runs both).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { LmdbStore } from '../../src/store/lmdb.ts';

const MODES = ['default', 'fsync'] as const;
type Mode = (typeof MODES)[number];
/** Resolved writes each mode must have reported before the kill. */
const WRITES = 1500;
/** A writer that has not got there by then is killed and the test fails. */
const GIVE_UP_MS = 60_000;

interface Acknowledged {
  lines: number;
  created: Set<string>;
  revs: Map<string, number>;
  released: string[];
  finished: string[];
}

/** Run the writer until both modes have acknowledged WRITES writes, then kill -9 it at once. */
function runAndKill(dir: string): Promise<Record<Mode, Acknowledged>> {
  const writer = join(import.meta.dirname, 'fixtures', 'lmdb-writer.ts');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', writer, dir], { stdio: ['pipe', 'pipe', 'pipe'] });
    const fresh = (): Acknowledged => ({ lines: 0, created: new Set(), revs: new Map(), released: [], finished: [] });
    const seen: Record<Mode, Acknowledged> = { default: fresh(), fsync: fresh() };
    let stderr = '';
    const giveUp = setTimeout(() => child.kill('SIGKILL'), GIVE_UP_MS);
    child.stderr.on('data', (chunk) => (stderr += chunk));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const [mode, what, id, rev] = line.split(' ') as [Mode, string, string, string];
      const acked = seen[mode];
      acked.lines++;
      if (what === 'created') acked.created.add(id);
      else if (what === 'commit') acked.revs.set(id, Number(rev));
      else if (what === 'released') acked.released.push(id);
      else if (what === 'finished') acked.finished.push(id);
      if (MODES.every((m) => seen[m].lines >= WRITES)) child.kill('SIGKILL');
    });
    child.on('exit', (code, signal) => {
      clearTimeout(giveUp);
      if (signal === 'SIGKILL' && MODES.every((m) => seen[m].lines >= WRITES)) resolve(seen);
      else reject(new Error(`writer exited (${code ?? signal}) before ${WRITES} writes of each mode: ${JSON.stringify(MODES.map((m) => seen[m].lines))} ${stderr}`));
    });
  });
}

const base = mkdtempSync(join(tmpdir(), 'rotor-crash-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));
const seen = await runAndKill(base);

for (const mode of MODES) {
  t.test(`every resolved write survives kill -9 (${mode})`, async (t) => {
    const acked = seen[mode];
    t.ok(acked.revs.size > 0 && acked.released.length > 0 && acked.finished.length > 0, 'the writer committed, released and finished before the kill');
    const store = await LmdbStore.open(join(base, mode));
    t.teardown(() => store.close());
    let missing = 0;
    for (const id of acked.created) if (!(await store.loadSession(id))) missing++;
    t.equal(missing, 0, `all ${acked.created.size} created sessions are there`);
    let behind = 0;
    for (const [id, rev] of acked.revs) {
      const state = await store.loadSession(id);
      // A commit in flight at the kill may have landed too: never less than acknowledged.
      if (!state || state.rev < rev || state.tokenHash !== `g${state.gen}` || state.gen !== state.rev + 1) behind++;
    }
    t.equal(behind, 0, `all ${acked.revs.size} sessions at or past their last acknowledged commit`);
    const lost = (await Promise.all(acked.released.map((id) => store.loadTask(id)))).filter((task) => !task).length;
    t.equal(lost, 0, `all ${acked.released.length} released tasks are there`);
    const unfinished = (await Promise.all(acked.finished.map((id) => store.loadTask(id)))).filter((task) => task?.status !== 'done').length;
    t.equal(unfinished, 0, `all ${acked.finished.length} finished tasks are done`);
    const state = await store.loadSession([...acked.revs.keys()][0]);
    t.ok(state?.prev?.reply.equals(Buffer.alloc(200, state.gen % 256)), 'a reply intact');
  });
}
