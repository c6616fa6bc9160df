/**
 * Issue 15: two rotor nodes (child processes, test/crash/fixtures/node.ts) on one Redis Cluster
 * of 3 masters and 3 replicas (test/helpers/redis-cluster.ts), in the store's default safe mode
 * (WAIT 1 after every write). As on one Redis (redis-two-nodes.test.ts): a session moves freely
 * between the nodes, a lost reply is replayed by the other node byte for byte, released tasks run
 * once across both. Then the master holding the task stream (and a third of the sessions) is
 * SIGKILLed under load: its replica is promoted, the dead master is started again (a supervisor
 * would) and rejoins as the replica, and through it all no client loses an acknowledged
 * rotation, no task runs twice, no revoked session comes back. Last the whole cluster goes: every
 * exchange is answered ROTOR_E_UNAVAILABLE, and rotor works again once the nodes are back.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateKeys } from '../../src/cli/keys.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { RotorClientError, TransportError, type RotorClient } from '../../src/client/index.ts';
import { RotorError } from '../../src/errors.ts';
import { hashPassword } from '../../src/server/index.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { verifyToken } from '../../src/session/token.ts';
import { RedisStore } from '../../src/store/redis.ts';
import type { TaskRecord } from '../../src/store/types.ts';
import { FrameParser, getHeader } from '../../src/wire/index.ts';
import { startRedisCluster } from '../helpers/redis-cluster.ts';
import { crashClient, noRuns, outcomeProblem, rawExchange, readTaskLog, RotorNode, runProblem, sessionMovesAndReplays, sleep, waitUntilEnded, type TaskRuns } from './helpers.ts';

const TASK_TIMEOUT_MS = 1500;
/** Waiting for tasks to end gives up after this: a guard against a hang, nothing is expected to come near it. */
const DRAIN_LIMIT_MS = 120_000;
/** The cluster's failure detection: a master silent this long is taken as failing, and its replica promoted. */
const NODE_TIMEOUT_MS = 1000;

const cluster = await startRedisCluster({ nodeTimeoutMs: NODE_TIMEOUT_MS });
t.teardown(() => cluster.close());
const dir = mkdtempSync(join(tmpdir(), 'rotor-cluster-nodes-'));
const keyFile = join(dir, 'keys.json');
const logFile = join(dir, 'tasks.log');
const random = pooledRandom();
const keys = loadOrCreateKeys(keyFile, random);
const spec = (name: string) => ({ store: cluster.url, dataDir: join(dir, name), port: 0, keyFile, logFile, taskTimeoutMs: TASK_TIMEOUT_MS });
const a = new RotorNode('A', spec('a'));
const b = new RotorNode('B', spec('b'));
t.teardown(async () => {
  await Promise.all([a.kill(), b.kill()]);
  rmSync(dir, { recursive: true, force: true });
});
await Promise.all([a.start(), b.start()]);
/** The nodes' shared store, read from here (the nodes' own key prefix, `rotor`). */
const store = await RedisStore.open(cluster.url);
t.teardown(() => store.close());

const sessionOf = (token: string) => verifyToken(keys, token).session;
const generationOf = (token: string) => verifyToken(keys, token).generation;
/** The port of the master serving a session's keys. */
const masterOfSession = (sid: string) => cluster.masterOf(`rotor:{${sid}}:s`);

/** A client whose next connection goes to `node()`; close() it to make it move. */
const movingClient = (node: () => RotorNode): RotorClient => crashClient(() => node().port);

interface Retries {
  unavailable: number;
  transport: number;
}

/**
 * Run `work` until it gets through: again after a TransportError (a node or its connection went)
 * and after ROTOR_E_UNAVAILABLE (the store could not do it: nothing acknowledged), each time with
 * the same token, as a client should. Anything else is thrown.
 */
async function through<T>(work: () => Promise<T>, retries: Retries = { unavailable: 0, transport: 0 }, giveUpMs = 30_000): Promise<T> {
  const deadline = Date.now() + giveUpMs;
  for (;;) {
    try {
      return await work();
    } catch (err) {
      // The client's refusal, or the store's own when the test reads it (a slot's new master not yet learnt).
      const unavailable = (err instanceof RotorClientError || err instanceof RotorError) && err.code === 'ROTOR_E_UNAVAILABLE';
      if (!(unavailable || err instanceof TransportError) || Date.now() > deadline) throw err;
      if (unavailable) retries.unavailable++;
      else retries.transport++;
      await sleep(50);
    }
  }
}

/** Wait until the store says every task in `ids` has ended; the log then. */
async function allEnded(ids: readonly string[]): Promise<{ runs: Map<string, TaskRuns>; ended: Map<string, TaskRecord>; missing: string[] }> {
  const { ended, missing } = await waitUntilEnded(store, ids, DRAIN_LIMIT_MS);
  return { runs: readTaskLog(logFile), ended, missing };
}

/** What is wrong with the runs of `ids`: no node was killed, so each must have started once and finished once, stored by its first claim. */
function problems(runs: Map<string, TaskRuns>, ended: Map<string, TaskRecord>, ids: readonly string[]): string[] {
  return ids.flatMap((id) => {
    const mine = runs.get(id) ?? noRuns();
    const record = ended.get(id);
    const problem =
      runProblem(mine, new Set()) ??
      (mine.starts.length !== 1 || mine.skips.length !== 0 ? `started ${mine.starts.length} times, skipped ${mine.skips.length} times` : undefined) ??
      (record && outcomeProblem(record, mine));
    return problem ? [`${id}: ${problem}`] : [];
  });
}

t.test('a session moves between nodes on the cluster, and a lost reply is replayed by the other node', (t) => sessionMovesAndReplays(t, a, b, allEnded));

t.test('the master of the task stream SIGKILLed under load: its replica takes over; nothing acknowledged is lost, no task runs twice, no revoked session returns', async (t) => {
  const started = Date.now();
  const victim = await cluster.masterOf('rotor:{tasks}:q');
  const [heir] = await cluster.replicasOf(victim);
  t.ok(heir, `the master of {tasks} (${victim}) has a replica (${heir})`);

  /** Log in clients (at `home`) until `want` have their session on the victim and `want` elsewhere; the rest are closed. */
  const clientsAround = async (want: number, home: (i: number) => RotorNode) => {
    const on: RotorClient[] = [];
    const off: RotorClient[] = [];
    for (let i = 0; on.length < want || off.length < want; i++) {
      const client = movingClient(() => home(i));
      await client.login('alice', 'pw');
      const side = (await masterOfSession(sessionOf(client.token!))) === victim ? on : off;
      if (side.length < want) side.push(client);
      else client.close();
    }
    return { on, off };
  };

  // Sessions ended before the kill, a few of them on the victim: they must stay ended.
  const ending = await clientsAround(3, () => a);
  const revoked: { token: string; sid: string; onVictim: boolean }[] = [];
  for (const [list, onVictim] of [[ending.on, true], [ending.off, false]] as const) {
    for (const client of list) {
      await client.request('GET', '/read');
      revoked.push({ token: client.token!, sid: sessionOf(client.token!), onVictim });
      await client.logout();
      client.close();
    }
  }

  const { on, off } = await clientsAround(4, (i) => (i % 2 === 0 ? a : b));
  const workers = [...on.map((client) => ({ client, onVictim: true })), ...off.map((client) => ({ client, onVictim: false }))];
  let stopping = false;
  t.teardown(() => {
    stopping = true;
  });
  let recoveredAt = 0;
  const acked: string[] = [];
  const errors: string[] = [];
  const retries: Retries = { unavailable: 0, transport: 0 };
  const stats = workers.map(() => ({ rounds: 0, afterRecovery: 0, longestMs: 0 }));
  const work = async ({ client }: (typeof workers)[number], i: number) => {
    let at = i % 2 === 0 ? a : b;
    const move = () => {
      at = at === a ? b : a;
      client.close();
    };
    // Waits longer than a node can take over one exchange while the store fails over (each store
    // call is bounded by its 2 s command timeout; an ack also relays to the task stream, on the
    // victim). A client that gave up sooner would send its copy again and leave the first queued
    // at this node; run after the client went on at the other node, that stale copy presents a
    // spent token — a reuse, which ends the session, as spec §4 says.
    const mine = crashClient(() => at.port, undefined, 15_000);
    await mine.useToken(client.token);
    client.close();
    try {
      while (!stopping) {
        const roundStarted = Date.now();
        move();
        await through(() => mine.request('GET', '/read'), retries);
        move();
        const job = await through(() => mine.request('POST', '/job', { body: JSON.stringify({ ms: Math.floor(Math.random() * 20) }) }), retries);
        await through(() => mine.ack(), retries);
        acked.push(...job.tasks);
        stats[i].rounds++;
        if (recoveredAt && roundStarted > recoveredAt) stats[i].afterRecovery++;
        stats[i].longestMs = Math.max(stats[i].longestMs, Date.now() - roundStarted);
      }
    } catch (err) {
      errors.push(`client ${i}${workers[i].onVictim ? ' (on the victim)' : ''}: ${String(err)}`);
    }
    return mine;
  };
  const running = workers.map((w, i) => work(w, i));

  await sleep(700);
  const roundsBefore = stats.reduce((sum, s) => sum + s.rounds, 0);
  await cluster.node(victim).stop('SIGKILL');
  const killedAt = Date.now();
  // The replica is promoted once the others have marked the master failing (NODE_TIMEOUT_MS)…
  await cluster.waitUntilOk({ replicas: 0, timeoutMs: 30_000 });
  const promotedAt = Date.now();
  const promoted = (await cluster.topology()).find((n) => n.port === heir);
  t.match(promoted, { role: 'master' }, `the replica ${heir} was promoted, ${promotedAt - killedAt} ms after the kill`);
  // …then it has no replica, so the safe mode refuses writes on its slots until the dead master is back as one.
  await cluster.node(victim).start();
  await cluster.waitUntilOk({ timeoutMs: 30_000 });
  recoveredAt = Date.now();
  const rejoined = (await cluster.topology()).find((n) => n.port === victim);
  t.match(rejoined, { role: 'replica', masterPort: heir }, `the dead master, started again, rejoined as its replica (${recoveredAt - promotedAt} ms)`);
  await sleep(1500);
  stopping = true;
  const clients = await Promise.all(running);

  t.same(errors, [], 'no client was refused anything but "unavailable, retry" through the failover');
  t.ok(roundsBefore > 0, `${roundsBefore} rounds before the kill`);
  // Not asserted: the store's own retries (within its command timeout) may ride out the whole outage.
  t.comment(`${retries.unavailable} exchanges answered ROTOR_E_UNAVAILABLE and sent again (${retries.transport} transport retries)`);
  t.same(stats.map((s, i) => (s.afterRecovery > 0 ? '' : `client ${i}`)).filter(Boolean), [], 'every client, those on the victim too, went on after the recovery');
  t.comment(`longest round per client (ms): ${stats.map((s, i) => `${workers[i].onVictim ? '*' : ''}${s.longestMs}`).join(' ')} (* = session on the victim)`);

  // No acknowledged rotation lost: the store holds the generation of each client's newest token.
  const generations = await Promise.all(clients.map(async (client) => ({ held: generationOf(client.token!), stored: (await through(() => store.loadSession(sessionOf(client.token!))))?.gen })));
  t.same(generations.filter((g) => g.held !== g.stored), [], `each of ${clients.length} sessions is stored at the generation its client holds`);
  for (const client of clients) {
    await t.resolves(through(() => client.request('GET', '/read')), "a client's newest token works");
    client.close();
  }

  // No revoked session revived.
  t.ok(revoked.filter((r) => r.onVictim).length >= 3, 'sessions ended before the kill, some on the victim');
  for (const { token, sid, onVictim } of revoked) {
    t.ok((await through(() => store.loadSession(sid)))?.revoked, `session ${sid}${onVictim ? ' (on the victim)' : ''} is still revoked in the store`);
    const ghost = crashClient(() => b.port);
    await ghost.useToken(token);
    const refused = await ghost.request('GET', '/read').then(() => undefined, (err: unknown) => err);
    t.ok(refused instanceof RotorClientError && /ROTOR_E_(SESSION_REVOKED|SESSION_UNKNOWN|TOKEN_REUSED)/.test(refused.code), 'and its last token is refused', { refused });
    ghost.close();
  }

  // No task lost, none run twice: no rotor node died, so each ran exactly once.
  const { runs, ended, missing } = await allEnded(acked);
  t.same(missing, [], `all ${acked.length} acknowledged tasks ended`);
  t.same(problems(runs, ended, acked), [], 'each started once, finished once, its outcome stored by its one claim');
  t.comment(`${acked.length} tasks, kill → promotion ${promotedAt - killedAt} ms, → rejoined ${recoveredAt - promotedAt} ms, ${Date.now() - started} ms in all`);
});

// Last: the whole cluster goes (and comes back empty).
t.test('the whole cluster unreachable: every exchange is answered ROTOR_E_UNAVAILABLE, and rotor works again once it is back', async (t) => {
  const client = movingClient(() => a);
  await client.login('alice', 'pw');
  const token = client.token!;
  client.close();
  await cluster.stopAll('SIGKILL');

  const frame = (verb: string, path: string) => Buffer.from(`${verb} ${path} ROTOR/1\r\nToken: ${token}\r\n\r\n`, 'latin1');
  const answer = async (node: RotorNode, verb: string, path: string) => {
    const { frames } = new FrameParser({ maxLineBytes: 8192, maxHeaderBytes: 65536, maxHeaders: 100, maxBodyBytes: 65536 }).push(await rawExchange(node.port, frame(verb, path)));
    const reply = frames[0]!;
    return reply.kind === 'response' ? `${reply.status} ${getHeader(reply, 'Error') ?? ''}` : 'not a response';
  };
  // The first exchanges may take up to the store's command timeout, while the nodes notice the connections are gone.
  for (const node of [a, b]) await answer(node, 'GET', '/read');
  const exchanges = [a, b].flatMap((node) => Array.from({ length: 25 }, (_, i) => answer(node, i % 2 ? 'POST' : 'GET', i % 2 ? '/rotor/ack' : '/read')));
  const answers = await Promise.all(exchanges);
  t.same(answers.filter((x) => x !== '503 ROTOR_E_UNAVAILABLE'), [], `all ${answers.length} exchanges sent at once to both nodes answered 503 ROTOR_E_UNAVAILABLE, each within rawExchange's guard`);
  const login = movingClient(() => b);
  const refused = await login.login('alice', 'pw').then(() => undefined, (err: unknown) => err);
  t.match(refused, { code: 'ROTOR_E_UNAVAILABLE' }, 'a login too');
  login.close();

  await cluster.startAll();
  await cluster.waitUntilOk({ timeoutMs: 30_000 });
  // Nothing was persisted: the cluster is back empty, so the user is put again.
  const passwordHash = await hashPassword('pw', resolveConfig({ auth: { scryptN: 1024 } }).auth, random);
  for (let tries = 0; ; tries++) {
    try {
      await store.putUser({ name: 'alice', passwordHash, createdAt: Date.now() });
      break;
    } catch (err) {
      if (tries > 200) throw err;
      await sleep(50);
    }
  }
  const back = movingClient(() => b);
  await through(() => back.login('alice', 'pw'));
  const job = await through(() => back.request('POST', '/job', { body: '{"ms":0}' }));
  await through(() => back.ack());
  back.close();
  const { runs, ended, missing } = await allEnded(job.tasks);
  t.same(missing, [], 'rotor works again on the same store clients: a login, an exchange, a task');
  t.same(problems(runs, ended, job.tasks), []);
});
