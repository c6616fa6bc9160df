/**
 * Issue 4 with a shared store: two rotor nodes (child processes) on one throwaway redis-server,
 * sharing a key file. A session moves freely between them, a lost reply is replayed by the
 * other node byte for byte, released tasks run once across both while no node dies, and when
 * one node is SIGKILLed its clients carry on at the other, which runs the dead node's claimed
 * tasks once their lease (2 × tasks.timeoutMs) has run out — as attempt 2, whose outcome stands.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateKeys } from '../../src/cli/keys.ts';
import type { RotorClient } from '../../src/client/index.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { RedisStore } from '../../src/store/redis.ts';
import type { TaskRecord } from '../../src/store/types.ts';
import { startRedis } from '../helpers/redis.ts';
import { crashClient, noRuns, outcomeProblem, persist, readTaskLog, RotorNode, runProblem, sessionMovesAndReplays, sleep, waitUntilEnded, type TaskRuns } from './helpers.ts';

const TASK_TIMEOUT_MS = 1500;
const LEASE_MS = 2 * TASK_TIMEOUT_MS;
/** Slow tasks are still running when their node is killed. */
const SLOW_TASK_MS = 1000;
/** Waiting for tasks to end gives up after this: a guard against a hang, nothing is expected to come near it. */
const DRAIN_LIMIT_MS = 120_000;

const redis = await startRedis();
t.teardown(() => redis.close());
const dir = mkdtempSync(join(tmpdir(), 'rotor-redis-nodes-'));
const keyFile = join(dir, 'keys.json');
const logFile = join(dir, 'tasks.log');
loadOrCreateKeys(keyFile, pooledRandom());
const spec = (name: string) => ({ store: redis.url, dataDir: join(dir, name), port: 0, keyFile, logFile, taskTimeoutMs: TASK_TIMEOUT_MS });
const a = new RotorNode('A', spec('a'));
const b = new RotorNode('B', spec('b'));
t.teardown(async () => {
  await Promise.all([a.kill(), b.kill()]);
  rmSync(dir, { recursive: true, force: true });
});
await Promise.all([a.start(), b.start()]);
const killed = () => new Set([...a.killed, ...b.killed]);
/** The nodes' shared store, read from here to see when tasks have ended. */
const store = await RedisStore.open(redis.url);
t.teardown(() => store.close());

/** Wait until the store says every task in `ids` has ended; the log then. */
async function allEnded(ids: readonly string[]): Promise<{ runs: Map<string, TaskRuns>; ended: Map<string, TaskRecord>; missing: string[] }> {
  const { ended, missing } = await waitUntilEnded(store, ids, DRAIN_LIMIT_MS);
  return { runs: readTaskLog(logFile), ended, missing };
}

/** What is wrong with the runs of `ids` and with their stored outcomes. */
function problems(runs: Map<string, TaskRuns>, ended: Map<string, TaskRecord>, ids: readonly string[]): string[] {
  return ids.flatMap((id) => {
    const record = ended.get(id);
    const problem = runProblem(runs.get(id) ?? noRuns(), killed()) ?? (record && outcomeProblem(record, runs.get(id) ?? noRuns()));
    return problem ? [`${id}: ${problem}`] : [];
  });
}

/** A client whose next connection goes to `node()`; `move` closes its connection so it does. */
function movingClient(node: () => RotorNode): RotorClient {
  return crashClient(() => node().port);
}

t.test('a session moves between nodes, and a lost reply is replayed by the other node', (t) => sessionMovesAndReplays(t, a, b, allEnded));

t.test('while no node dies, tasks released on either node run once across both', async (t) => {
  const CLIENTS = 6;
  const ROUNDS = 15;
  const acked: string[] = [];
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      let at = i % 2 === 0 ? a : b;
      const client = movingClient(() => at);
      const move = () => {
        at = at === a ? b : a;
        client.close();
      };
      await client.login('alice', 'pw');
      for (let round = 0; round < ROUNDS; round++) {
        move();
        const job = await client.request('POST', '/job', { body: JSON.stringify({ ms: Math.floor(Math.random() * 20) }) });
        move();
        await client.ack();
        acked.push(...job.tasks);
      }
      client.close();
    }),
  );
  t.equal(acked.length, CLIENTS * ROUNDS, `${acked.length} tasks acked, each posted on one node and acked on the other`);
  const { runs, ended, missing } = await allEnded(acked);
  t.same(missing, [], 'all ended');
  const twice = acked.filter((id) => runs.get(id)?.starts.length !== 1 || runs.get(id)!.skips.length !== 0);
  t.same(twice, [], 'each started once: one claim each, no lease ran out');
  t.same(problems(runs, ended, acked), [], 'and finished once, stored by that claim');
  t.same(acked.filter((id) => ended.get(id)?.attempt !== 1), [], 'every one on its first claim');
  const byPid = new Map<number, number>();
  for (const id of acked) byPid.set(runs.get(id)!.starts[0].pid, (byPid.get(runs.get(id)!.starts[0].pid) ?? 0) + 1);
  t.comment(`tasks run per node: A ${byPid.get(a.pid!) ?? 0}, B ${byPid.get(b.pid!) ?? 0}`);
});

t.test('when A is SIGKILLed its clients carry on at B, which runs the tasks A had claimed', async (t) => {
  const started = Date.now();
  const aPid = a.pid!;
  // Slow tasks released on A: A claims them at once and is killed while they run.
  const slow = movingClient(() => a);
  await slow.login('alice', 'pw');
  const slowIds: string[] = [];
  for (let i = 0; i < 6; i++) {
    const job = await slow.request('POST', '/job', { body: JSON.stringify({ ms: SLOW_TASK_MS }) });
    await slow.ack();
    slowIds.push(...job.tasks);
  }
  slow.close();

  let stopping = false;
  // A test that throws half way still stops its clients.
  t.teardown(() => {
    stopping = true;
  });
  let killedAt = 0;
  const acked: string[] = [];
  const errors: string[] = [];
  let afterKill = 0;
  const work = async (i: number): Promise<RotorClient | undefined> => {
    // Half the clients prefer A and move to B when A is gone, by their own retries.
    const home = i % 2 === 0 ? a : b;
    const client = movingClient(() => (home.alive ? home : b));
    try {
      await persist(() => client.login('alice', 'pw'));
      while (!stopping) {
        await persist(() => client.request('GET', '/read'));
        const job = await persist(() => client.request('POST', '/job', { body: JSON.stringify({ ms: Math.floor(Math.random() * 20) }) }));
        await persist(() => client.ack());
        acked.push(...job.tasks);
        if (killedAt && home === a) afterKill++;
      }
      return client;
    } catch (err) {
      errors.push(`client ${i}: ${String(err)}`);
      return undefined;
    }
  };
  const workers = Array.from({ length: 8 }, (_, i) => work(i));

  // Kill A once it has started slow tasks, while they run.
  const deadline = Date.now() + 5000;
  let startedOnA: string[] = [];
  while (Date.now() < deadline) {
    const runs = readTaskLog(logFile);
    startedOnA = slowIds.filter((id) => runs.get(id)?.starts.some((s) => s.pid === aPid));
    if (startedOnA.length > 0) break;
    await sleep(20);
  }
  await sleep(200);
  await a.kill();
  killedAt = Date.now();
  await sleep(1500);
  stopping = true;
  const clients = await Promise.all(workers);
  t.same(errors, [], 'no client was refused anything through the kill');
  t.ok(afterKill > 0, `clients of A got through at B after the kill (${afterKill} rounds)`);
  for (const client of clients) {
    if (!client) continue;
    await t.resolves(persist(() => client.request('GET', '/read')), "a client's newest token works on B");
    client.close();
  }

  t.ok(startedOnA.length > 0, `A was running ${startedOnA.length} slow tasks when it was killed`);
  const all = [...slowIds, ...acked];
  const { runs, ended, missing } = await allEnded(all);
  t.same(missing, [], `all ${all.length} acknowledged tasks ended`);
  t.same(problems(runs, ended, all), [], 'none ran twice unless the kill interrupted it, and then as a later claim, whose outcome stands');
  for (const id of startedOnA) {
    const [onA, onB] = runs.get(id)!.starts;
    t.ok(onA.pid === aPid && onB?.pid === b.pid && runs.get(id)!.finishes[0]?.pid === b.pid, `slow task ${id}: started on A, run again and finished by B`);
    t.ok(onB && onB.attempt > onA.attempt, `as a later claim (attempt ${onA.attempt} on A, ${onB?.attempt} on B)`);
    t.match(ended.get(id), { status: 'done', attempt: onB?.attempt }, "B's claim stored the outcome");
    // The lease began at the claim, a moment before the start line.
    t.ok(onB && onB.at - onA.at >= LEASE_MS - 250, `only after A's lease ran out (${onB ? onB.at - onA.at : '-'} ms after A started it)`);
  }
  const rerun = all.filter((id) => runs.get(id)!.starts.length > 1).length;
  t.comment(`${acked.length} tasks acked around the kill, ${rerun} run again by B, ${Date.now() - started} ms`);
});
