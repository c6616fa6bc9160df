/**
 * Issue 4 at the server level: rotor on LMDB in a child process, SIGKILLed at random moments
 * and restarted on the same data directory and port while clients keep going. LMDB's default
 * mode is safe against a killed process (not against power loss), which is what this tests.
 *
 * From the clients' side: nobody holding its newest token is locked out, every acknowledged
 * task ends (none is lost), a task runs again only if a kill interrupted its earlier run — and
 * then as a later claim (attempt 2 or more), the newest of which stored its outcome — and
 * sessions revoked before the kills stay revoked.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateKeys } from '../../src/cli/keys.ts';
import { RotorClientError, type RotorClient } from '../../src/client/index.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { crashClient, noRuns, outcomeProblem, persist, readTaskLog, RotorNode, runProblem, sleep, waitUntilEnded } from './helpers.ts';

const CLIENTS = 8;
const KILLS = 5;
/** Traffic between kills is this long, at random. */
const KILL_GAP_MS: [number, number] = [300, 1500];
/** Task handlers work up to this long: some kills land inside one. */
const TASK_MS = 60;
/** Lease = 2 × this: tasks the dead process had claimed run again after it. */
const TASK_TIMEOUT_MS = 1000;
/**
 * The backlog the clients leave (thousands of tasks when they run fast) drains at the pace of
 * the node: the test waits for every task to end. This only stops a hang from eating the whole
 * tap timeout; nothing is expected to come near it.
 */
const DRAIN_LIMIT_MS = 180_000;

const dir = mkdtempSync(join(tmpdir(), 'rotor-lmdb-kill-'));
const keyFile = join(dir, 'keys.json');
const logFile = join(dir, 'tasks.log');
loadOrCreateKeys(keyFile, pooledRandom());
const node = new RotorNode('lmdb', { store: 'lmdb', dataDir: join(dir, 'data'), port: 0, keyFile, logFile, taskTimeoutMs: TASK_TIMEOUT_MS });
t.teardown(async () => {
  await node.kill();
  rmSync(dir, { recursive: true, force: true });
});
const target = () => node.port;
const stats = { connects: 0, tokens: 0 };

/** The code a request with `token` is refused with, or 'ok'. */
async function tryToken(token: string, path = '/read'): Promise<string> {
  const probe = crashClient(target);
  await probe.useToken(token);
  try {
    await persist(() => probe.request('GET', path));
    return 'ok';
  } catch (err) {
    if (err instanceof RotorClientError) return err.code;
    throw err;
  } finally {
    probe.close();
  }
}

t.test('clients ride out kill -9 of an LMDB node', async (t) => {
  const started = Date.now();
  await node.start();

  // Two sessions ended before any kill: one by logout, one by a reused token.
  const leaver = crashClient(target, stats);
  await leaver.login('alice', 'pw');
  await leaver.request('GET', '/read');
  const leaverToken = leaver.token!;
  await leaver.logout();
  const victim = crashClient(target, stats);
  await victim.login('alice', 'pw');
  const stolen = victim.token!;
  await victim.request('GET', '/read');
  await victim.request('GET', '/read');
  const victimToken = victim.token!;
  t.equal(await tryToken(stolen), 'ROTOR_E_TOKEN_REUSED', 'an old token is reuse: the session is revoked');
  t.equal(await tryToken(victimToken), 'ROTOR_E_SESSION_REVOKED', 'and its newest token is refused');
  t.equal(await tryToken(leaverToken), 'ROTOR_E_SESSION_REVOKED', 'a logged-out session refuses its tokens');

  let stopping = false;
  // A test that throws half way still stops its clients.
  t.teardown(() => {
    stopping = true;
  });
  const acked: string[] = [];
  const errors: string[] = [];
  let exchanges = 0;
  let exchangesAtLastStart = 0;
  const work = async (i: number): Promise<RotorClient | undefined> => {
    const client = crashClient(target, stats);
    try {
      await persist(() => client.login('alice', 'pw'));
      while (!stopping) {
        await persist(() => client.request('GET', '/read'));
        const job = await persist(() => client.request('POST', '/job', { body: JSON.stringify({ ms: Math.floor(Math.random() * TASK_MS) }) }));
        if (job.status !== 202 || job.tasks.length !== 1) throw new Error(`POST /job answered ${job.status} with tasks ${job.tasks.join(',')}`);
        await persist(() => client.ack());
        acked.push(job.tasks[0]);
        exchanges += 3;
      }
      return client;
    } catch (err) {
      errors.push(`client ${i}: ${String(err)}`);
      return undefined;
    }
  };
  const workers = Array.from({ length: CLIENTS }, (_, i) => work(i));

  for (let kill = 0; kill < KILLS; kill++) {
    await sleep(KILL_GAP_MS[0] + Math.random() * (KILL_GAP_MS[1] - KILL_GAP_MS[0]));
    await node.kill();
    await node.start();
    exchangesAtLastStart = exchanges;
  }
  await sleep(1000);
  stopping = true;
  const clients = await Promise.all(workers);
  t.same(errors, [], 'no client was refused anything through the kills');
  t.ok(exchanges > exchangesAtLastStart, `clients got through after the last restart (${exchanges - exchangesAtLastStart} exchanges)`);
  t.ok(stats.connects >= CLIENTS + KILLS, `clients reconnected (${stats.connects} connects)`);

  // Nobody holding its newest token is locked out.
  let lockedOut = 0;
  for (const client of clients) {
    if (!client) continue;
    try {
      await persist(() => client.request('GET', '/read'));
    } catch (err) {
      lockedOut++;
      t.fail(`a client's newest token was refused: ${String(err)}`);
    }
    client.close();
  }
  t.equal(lockedOut, 0, `all ${clients.filter(Boolean).length} clients still get in with their newest token`);

  // Every acknowledged task ends, once the leases of the killed processes ran out: the store
  // (the node's own LMDB, read from here too) says so.
  const store = await LmdbStore.open(node.spec.dataDir);
  t.teardown(() => store.close());
  const drainStarted = Date.now();
  const { ended, missing } = await waitUntilEnded(store, acked, DRAIN_LIMIT_MS);
  t.same(missing, [], `all ${acked.length} acknowledged tasks ended (${Date.now() - drainStarted} ms after the clients stopped)`);
  const runs = readTaskLog(logFile);
  const problems = [...runs].flatMap(([id, r]) => {
    const problem = runProblem(r, node.killed);
    return problem ? [`${id}: ${problem}`] : [];
  });
  t.same(problems, [], 'no task ran twice unless a kill interrupted it, and every run again was a later claim');
  const mismatched = [...ended].flatMap(([id, record]) => {
    const problem = outcomeProblem(record, runs.get(id) ?? noRuns());
    return problem ? [`${id}: ${problem}`] : [];
  });
  t.same(mismatched, [], "none failed, each done one's effect is in the log, each outcome stored by its last run");
  const rerun = [...runs.values()].filter((r) => r.starts.length > 1).length;
  const timedOut = [...ended.values()].filter((r) => r.status === 'timed_out').length;
  const skipped = [...runs.values()].filter((r) => r.skips.length > 0).length;
  const unacked = [...runs.keys()].filter((id) => !acked.includes(id)).length;
  t.equal(unacked, 0, 'every task that ran was acknowledged');

  // Sessions revoked before the kills are still revoked.
  t.equal(await tryToken(victimToken), 'ROTOR_E_SESSION_REVOKED', 'the reused session is still revoked after the restarts');
  t.equal(await tryToken(stolen), 'ROTOR_E_SESSION_REVOKED', 'its stolen token too');
  t.equal(await tryToken(leaverToken), 'ROTOR_E_SESSION_REVOKED', 'the logged-out session is still revoked');

  t.comment(
    `${KILLS} kills, ${exchanges} exchanges, ${stats.tokens} tokens, ${stats.connects} connects, ${acked.length} tasks acked, ` +
      `${rerun} re-run after a kill, ${skipped} skipped by the idempotency check, ${timedOut} timed out, ${Date.now() - started} ms`,
  );
});
