import t from 'tap';
import { getHeader } from '../../src/wire/index.ts';
import { FrameClient, opsGet, PASSWORD, scrape, startOpsServer, textLog, tokenOf, USER, valueOf } from './helpers.ts';

t.test('a scripted session shows exactly its counts on /metrics', async (t) => {
  const ops = await startOpsServer();
  t.teardown(() => ops.close());
  const client = await FrameClient.open(ops.tcpPort);
  t.teardown(() => client.close());

  const first = await client.login();
  const hello = await client.send('GET', '/hello', [['Token', first]]);
  const second = tokenOf(hello);
  // The reply to `first` was "lost": the same request with the same token gets it again, byte for byte.
  const again = await client.send('GET', '/hello', [['Token', first]]);
  t.equal(getHeader(again, 'Token'), second, 'the lost reply is replayed');
  const deferred = await client.send('POST', '/reverse', [['Token', second]], 'stressed');
  t.equal(deferred.status, 202);
  const taskId = getHeader(deferred, 'Task')!;
  const third = tokenOf(deferred);
  const ack = await client.send('POST', '/rotor/ack', [['Token', third]]);
  t.equal(ack.status, 200, 'acked: the task is released');
  await ops.server.rotor.tasks.idle();
  const result = await client.send('GET', `/rotor/tasks/${taskId}`, [['Token', third]]);
  t.equal(result.body?.toString(), 'desserts', 'the task ran and its result is fetched');
  // `second` was rotated away two exchanges ago: presenting it again revokes the session.
  const reuse = await client.send('GET', '/hello', [['Token', second]]);
  t.equal(getHeader(reuse, 'Error'), 'ROTOR_E_TOKEN_REUSED');
  const failed = await client.send('POST', '/rotor/login', [['User', USER], ['Password', `not ${PASSWORD}`]]);
  t.equal(getHeader(failed, 'Error'), 'ROTOR_E_AUTH_FAILED');
  const other = await client.login();
  t.equal((await client.send('POST', '/rotor/logout', [['Token', other]])).status, 200);

  const m = await scrape(ops.opsPort);
  const exchanges = (operation: string, outcome: string) => valueOf(m, 'rotor_exchanges_total', { operation, outcome });
  t.equal(exchanges('login', 'ok'), 2, 'two logins');
  t.equal(exchanges('login', 'ROTOR_E_AUTH_FAILED'), 1, 'one failed login');
  t.equal(exchanges('app', 'ok'), 2, 'GET /hello and POST /reverse');
  t.equal(exchanges('app', 'replay'), 1, 'the lost reply, replayed');
  t.equal(exchanges('app', 'ROTOR_E_TOKEN_REUSED'), 1, 'the reuse');
  t.equal(exchanges('ack', 'ok'), 1);
  t.equal(exchanges('task', 'ok'), 1);
  t.equal(exchanges('logout', 'ok'), 1);
  t.equal(exchanges('resume', 'ok'), 0, 'operations not used show 0');
  const total = m.filter((s) => s.name === 'rotor_exchanges_total').reduce((sum, s) => sum + s.value, 0);
  t.equal(total, 10, 'ten frames in all, each counted once');
  t.equal(valueOf(m, 'rotor_replays_total'), 1);
  t.equal(valueOf(m, 'rotor_token_reuses_total'), 1);
  t.equal(valueOf(m, 'rotor_revocations_total', { reason: 'reuse' }), 1);
  t.equal(valueOf(m, 'rotor_revocations_total', { reason: 'logout' }), 1);
  t.equal(valueOf(m, 'rotor_revocations_total', { reason: 'deleted' }), 0);
  t.equal(valueOf(m, 'rotor_logins_total', { result: 'ok' }), 2);
  t.equal(valueOf(m, 'rotor_logins_total', { result: 'password_failed' }), 1);
  t.equal(valueOf(m, 'rotor_logins_total', { result: 'totp_failed' }), 0);
  t.equal(valueOf(m, 'rotor_tasks_total', { state: 'released' }), 1);
  t.equal(valueOf(m, 'rotor_tasks_total', { state: 'claimed' }), 1);
  t.equal(valueOf(m, 'rotor_tasks_total', { state: 'done' }), 1);
  t.equal(valueOf(m, 'rotor_tasks_total', { state: 'failed' }), 0);
  t.equal(valueOf(m, 'rotor_connections', { carrier: 'tcp' }), 1, 'the one TCP connection, open');
  t.equal(valueOf(m, 'rotor_connections', { carrier: 'http' }), 0);
  // The store wrapper saw every call: three user lookups (two logins, one failure), two sessions made, one task finished.
  t.equal(valueOf(m, 'rotor_store_seconds_count', { operation: 'loadUser' }), 3);
  t.equal(valueOf(m, 'rotor_store_seconds_count', { operation: 'createSession' }), 2);
  t.equal(valueOf(m, 'rotor_store_seconds_count', { operation: 'finishTask' }), 1);
  t.equal(valueOf(m, 'rotor_store_seconds_bucket', { operation: 'loadUser', le: '+Inf' }), 3, 'the +Inf bucket holds every call');
  t.equal(valueOf(m, 'rotor_store_errors_total', { operation: 'loadSession' }), 0);
  t.ok(m.some((s) => s.name === 'rotor_event_loop_delay_seconds' && s.labels.quantile === '0.99'), 'event-loop delay is reported');

  client.close();
  await new Promise<void>((resolve) => client.socket.once('close', () => resolve()));
  // The server sees the close a moment later: wait for that event, not for a time.
  while (ops.server.tcp.connections > 0) await new Promise((resolve) => setImmediate(resolve));
  t.equal(valueOf(await scrape(ops.opsPort), 'rotor_connections', { carrier: 'tcp' }), 0, 'the gauge follows the connection');
});

t.test('two servers in one process keep their metrics apart', async (t) => {
  const a = await startOpsServer();
  t.teardown(() => a.close());
  const b = await startOpsServer();
  t.teardown(() => b.close());
  const client = await FrameClient.open(a.tcpPort);
  t.teardown(() => client.close());
  await client.login();
  t.equal(valueOf(await scrape(a.opsPort), 'rotor_logins_total', { result: 'ok' }), 1);
  t.equal(valueOf(await scrape(b.opsPort), 'rotor_logins_total', { result: 'ok' }), 0);
});

t.test('connection refusals are counted by carrier and reason', async (t) => {
  const ops = await startOpsServer({ config: { connection: { maxConnections: 1 } } });
  t.teardown(() => ops.close());
  const held = await FrameClient.open(ops.tcpPort);
  t.teardown(() => held.close());
  await held.send('GET', '/rotor/ping');
  const refused = await FrameClient.open(ops.tcpPort);
  t.teardown(() => refused.close());
  const reply = await refused.send('GET', '/rotor/ping');
  t.equal(getHeader(reply, 'Error'), 'ROTOR_E_TOO_MANY_CONNECTIONS');
  const m = await scrape(ops.opsPort);
  t.equal(valueOf(m, 'rotor_connections_refused_total', { carrier: 'tcp', reason: 'ROTOR_E_TOO_MANY_CONNECTIONS' }), 1);
  t.equal(valueOf(m, 'rotor_exchanges_total', { operation: 'ping', outcome: 'ok' }), 1, 'the refused connection sent no frame rotor answered');
});

t.test('the operations listener answers only its three paths', async (t) => {
  const ops = await startOpsServer({ log: textLog().log });
  t.teardown(() => ops.close());
  t.equal((await opsGet(ops.opsPort, '/livez')).status, 200);
  t.equal((await opsGet(ops.opsPort, '/readyz')).status, 200);
  t.equal((await opsGet(ops.opsPort, '/metrics?x=1')).status, 200, 'a query string is ignored');
  t.equal((await opsGet(ops.opsPort, '/rotor/ping')).status, 404, 'no rotor path is served here');
});
