/**
 * kill -9 right after commits resolved: every write whose promise resolved must be there when
 * the store is opened again, in both durability modes.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { LmdbStore } from '../../src/store/lmdb.ts';

const base = mkdtempSync(join(tmpdir(), 'rotor-crash-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));
const writer = join(import.meta.dirname, 'fixtures', 'lmdb-writer.ts');
/** Resolved writes to see before the kill. */
const WRITES = 3000;

interface Acknowledged {
  created: Set<string>;
  revs: Map<string, number>;
  released: string[];
  finished: string[];
}

/** Run the writer until it has acknowledged `WRITES` writes, then kill -9 it at once. */
function runAndKill(dir: string, mode: string): Promise<Acknowledged> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', writer, dir, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    const seen: Acknowledged = { created: new Set(), revs: new Map(), released: [], finished: [] };
    let lines = 0;
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const [what, id, rev] = line.split(' ');
      if (what === 'created') seen.created.add(id);
      else if (what === 'commit') seen.revs.set(id, Number(rev));
      else if (what === 'released') seen.released.push(id);
      else if (what === 'finished') seen.finished.push(id);
      if (++lines === WRITES) child.kill('SIGKILL');
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL' && lines >= WRITES) resolve(seen);
      else reject(new Error(`writer exited (${code ?? signal}) after ${lines} lines: ${stderr}`));
    });
  });
}

for (const mode of ['default', 'fsync']) {
  t.test(`every resolved write survives kill -9 (${mode})`, async (t) => {
    const dir = join(base, mode);
    const seen = await runAndKill(dir, mode);
    t.ok(seen.revs.size > 0 && seen.released.length > 0 && seen.finished.length > 0, 'the writer committed, released and finished before the kill');
    const store = await LmdbStore.open(dir);
    t.teardown(() => store.close());
    let missing = 0;
    for (const id of seen.created) if (!(await store.loadSession(id))) missing++;
    t.equal(missing, 0, `all ${seen.created.size} created sessions are there`);
    let behind = 0;
    for (const [id, rev] of seen.revs) {
      const state = await store.loadSession(id);
      // A commit that was in flight at the kill may have landed too: never less than acknowledged.
      if (!state || state.rev < rev || state.tokenHash !== `g${state.gen}` || state.gen !== state.rev + 1) behind++;
    }
    t.equal(behind, 0, `all ${seen.revs.size} sessions at or past their last acknowledged commit`);
    const lostTasks = (await Promise.all(seen.released.map((id) => store.loadTask(id)))).filter((task) => !task).length;
    t.equal(lostTasks, 0, `all ${seen.released.length} released tasks are there`);
    const unfinished = (await Promise.all(seen.finished.map((id) => store.loadTask(id)))).filter((task) => task?.status !== 'done').length;
    t.equal(unfinished, 0, `all ${seen.finished.length} finished tasks are done`);
    const state = await store.loadSession([...seen.revs.keys()][0]);
    t.ok(state?.prev?.reply.equals(Buffer.alloc(200, state.gen % 256)), 'a reply intact');
  });
}
