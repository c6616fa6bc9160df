/**
 * runBench against an in-process server: it must report work done, no errors, and a result
 * that survives JSON. No timing thresholds here — how fast is bench/run.ts's business.
 */
import t from 'tap';
import { runBench, startEchoServer, startRotorServer, formatResult, isLoopback, type BenchResult } from '../../src/bench/index.ts';
import { echoReplies } from '../../src/bench/servers.ts';
import { serializeFrame } from '../../src/wire/index.ts';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

function checkShape(t: TapTest, result: BenchResult): void {
  const copy = JSON.parse(JSON.stringify(result)) as BenchResult;
  t.same(copy, result, 'the result survives JSON unchanged');
  t.equal(copy.format, 'rotor-bench/1');
  for (const key of ['requests', 'ok', 'throughput', 'responseRate', 'durationMs', 'setupMs', 'connections', 'pipeline'] as const) {
    t.type(copy[key], 'number', `${key} is a number`);
  }
  for (const key of ['min', 'mean', 'p50', 'p90', 'p99', 'p999', 'max'] as const) t.type(copy.latencyUs[key], 'number', `latency ${key} is a number`);
  t.ok(copy.latencyUs.p50 <= copy.latencyUs.p99 && copy.latencyUs.p99 <= copy.latencyUs.max, 'percentiles are ordered');
  t.type(copy.errors, 'object');
  t.type(copy.cpu.load, 'number');
}

t.test('rotate against an in-process rotor: positive throughput, no errors, JSON-clean result', async (t) => {
  const server = await startRotorServer({ user: 'bench', password: 'bench' });
  t.teardown(() => server.close());
  const result = await runBench({ port: server.port, scenario: 'rotate', connections: 2, pipeline: 4, warmupMs: 200, durationMs: 800, progress: false });
  t.ok(result.throughput > 0, 'throughput is positive');
  t.ok(result.ok > 0 && result.ok === result.requests, 'every measured response was a success');
  t.same(result.errors, {}, 'no errors');
  checkShape(t, result);
  t.match(formatResult(result), /throughput/);
});

t.test('every scenario runs without errors on a count bound', async (t) => {
  const server = await startRotorServer({ user: 'bench', password: 'bench' });
  t.teardown(() => server.close());
  for (const scenario of ['meta', 'tasks', 'login', 'ping'] as const) {
    const result = await runBench({ port: server.port, scenario, connections: 2, pipeline: 2, warmupMs: 0, durationMs: 5_000, count: 200, progress: false });
    t.same(result.errors, {}, `${scenario}: no errors`);
    t.ok(result.ok >= 200, `${scenario}: at least the counted requests were answered`);
    if (scenario === 'tasks') t.ok((result.extra.completed ?? 0) > 0, 'tasks: some deferred tasks completed');
  }
});

t.test('the echo ceiling answers what the load generator expects', async (t) => {
  const server = await startEchoServer('bench');
  t.teardown(() => server.close());
  const result = await runBench({ port: server.port, connections: 1, pipeline: 2, warmupMs: 0, durationMs: 5_000, count: 100, progress: false });
  t.same(result.errors, {});
  t.ok(result.ok >= 100);
});

t.test('the echo replies have the shape of rotor’s', async (t) => {
  const hello = echoReplies('bench').get('GET /hello')!.toString('latin1');
  t.match(hello, /^ROTOR\/1 200 OK\r\nToken: k1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}\r\nContent-Type: text\/plain; charset=utf-8\r\nBIN-Length: 12\r\n\r\nhello, bench$/);
  t.ok(serializeFrame({ kind: 'response', status: 200, reason: 'OK', headers: [], body: undefined }).length > 0);
});

t.test('only loopback targets', async (t) => {
  for (const host of ['127.0.0.1', '127.3.2.1', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) t.ok(isLoopback(host), `${host} is loopback`);
  for (const host of ['10.0.0.1', '0.0.0.0', '::', 'example.com', '128.0.0.1', '::ffff:10.0.0.1']) t.notOk(isLoopback(host), `${host} is not`);
  await t.rejects(runBench({ host: '10.1.2.3', port: 1, durationMs: 100, progress: false }), /only targets loopback/);
});

t.test('a server that is not there is a clear error, not a hang', async (t) => {
  const server = await startEchoServer('bench');
  const port = server.port;
  await server.close();
  await t.rejects(runBench({ port, durationMs: 100, warmupMs: 0, progress: false }), /cannot connect/);
});
