import t from 'tap';
import { RedisStore } from '../../src/store/redis.ts';
import { getHeader } from '../../src/wire/index.ts';
import { startRedis } from '../helpers/redis.ts';
import { testApp } from '../carriers/helpers.ts';
import { FrameClient, opsGet, scrape, startOpsServer, textLog, valueOf } from './helpers.ts';

/** Readiness checks a test may make while waiting for a change; past it the test fails (each check is one GET, ≤ 1 s). */
const MAX_CHECKS = 200;
const BETWEEN_CHECKS_MS = 50;

/** GET /readyz until it answers `status`; returns how many answers were something else. */
async function readyzUntil(port: number, status: number): Promise<{ others: number; body: string }> {
  for (let check = 0, others = 0; check < MAX_CHECKS; check++) {
    const answer = await opsGet(port, '/readyz');
    if (answer.status === status) return { others, body: answer.body };
    others++;
    await new Promise((resolve) => setTimeout(resolve, BETWEEN_CHECKS_MS));
  }
  throw new Error(`/readyz did not answer ${status} in ${MAX_CHECKS} checks`);
}

t.test('readiness goes red when Redis stops and green when it is back', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const store = await RedisStore.open(redis.url, { commandTimeoutMs: 500, connectTimeoutMs: 500 });
  t.teardown(() => store.close());
  const ops = await startOpsServer({ store, log: textLog('fatal').log });
  t.teardown(() => ops.close());

  const up = await opsGet(ops.opsPort, '/readyz');
  t.equal(up.status, 200, 'ready while Redis answers');
  t.equal(up.body, 'ready\n');

  await redis.stop();
  const down = await readyzUntil(ops.opsPort, 503);
  t.match(down.body, /^not ready: the redis store does not answer/, 'says that it is the store');
  t.equal((await opsGet(ops.opsPort, '/livez')).status, 200, 'still alive: a store outage is no reason to restart rotor');
  const red = await opsGet(ops.opsPort, '/readyz');
  t.equal(red.status, 503, 'stays red while Redis is away');

  await redis.start();
  const back = await readyzUntil(ops.opsPort, 200);
  t.equal(back.body, 'ready\n', 'green again once ioredis has reconnected');
  // Every red answer was one ping that failed, and each is counted.
  const m = await scrape(ops.opsPort);
  t.equal(valueOf(m, 'rotor_store_errors_total', { operation: 'ping' }), 2 + back.others, 'failed pings are counted');

  // Redis came back empty (nothing is persisted): alice is gone, and rotor can say so again.
  const client = await FrameClient.open(ops.tcpPort);
  t.teardown(() => client.close());
  const login = await client.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'x']]);
  t.equal(getHeader(login, 'Error'), 'ROTOR_E_AUTH_FAILED', 'the store answers logins again (not ROTOR_E_UNAVAILABLE)');
});

t.test('readiness is red during shutdown, while in-flight work finishes', async (t) => {
  let entered!: () => void;
  const inFlight = new Promise<void>((resolve) => (entered = resolve));
  let release!: () => void;
  const base = testApp();
  const app = { tasks: base.tasks, routes: { ...base.routes, 'GET /held': () => (entered(), new Promise<{ body: string }>((resolve) => (release = () => resolve({ body: 'done' })))) } };
  const ops = await startOpsServer({ app });
  t.teardown(() => ops.close());
  const client = await FrameClient.open(ops.tcpPort);
  t.teardown(() => client.close());
  const token = await client.login();
  const held = client.send('GET', '/held', [['Token', token]]);
  await inFlight;
  t.equal((await opsGet(ops.opsPort, '/readyz')).status, 200, 'ready before the shutdown');

  const closed = ops.server.close();
  const draining = await opsGet(ops.opsPort, '/readyz');
  t.equal(draining.status, 503, 'red as soon as the shutdown starts');
  t.equal(draining.body, 'not ready: shutting down\n');
  t.equal((await opsGet(ops.opsPort, '/livez')).status, 200, 'alive while it drains');
  release();
  t.equal((await held).status, 200, 'the in-flight exchange is still answered');
  await closed;
  await t.rejects(opsGet(ops.opsPort, '/readyz'), { code: 'ECONNREFUSED' }, 'the operations listener closes last');
});
