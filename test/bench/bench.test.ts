/**
 * runBench against an in-process server: it must report work done, no errors, and a result
 * that survives JSON. No timing thresholds here — how fast is bench/run.ts's business.
 */
import t from 'tap';
import { runBench, startEchoServer, startRotorServer, formatResult, isLoopback, type BenchResult, type BenchServer } from '../../src/bench/index.ts';
import { echoReplies, startHttpEchoServer, StoreUnavailable } from '../../src/bench/servers.ts';
import { frameToHttp, HttpResponseReader } from '../../src/bench/carriers.ts';
import { serializeFrame } from '../../src/wire/index.ts';
import { LatencyRecorder } from '../../src/bench/histogram.ts';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

function checkShape(t: TapTest, result: BenchResult): void {
  const copy = JSON.parse(JSON.stringify(result)) as BenchResult;
  t.same(copy, result, 'the result survives JSON unchanged');
  t.equal(copy.format, 'rotor-bench/1');
  for (const key of ['requests', 'ok', 'throughput', 'responseRate', 'durationMs', 'setupMs', 'connections', 'pipeline'] as const) {
    t.type(copy[key], 'number', `${key} is a number`);
  }
  for (const key of ['min', 'mean', 'p50', 'p90', 'p99', 'p999', 'max'] as const) t.type(copy.latencyUs[key], 'number', `latency ${key} is a number`);
  checkOrdered(t, copy.latencyUs, 'the run');
  t.type(copy.errors, 'object');
  t.type(copy.cpu.load, 'number');
}

function checkOrdered(t: TapTest, l: BenchResult['latencyUs'], what: string): void {
  const order = [l.min, l.p50, l.p90, l.p99, l.p999, l.max];
  t.same(order, [...order].sort((a, b) => a - b), `${what}: min ≤ p50 ≤ p90 ≤ p99 ≤ p999 ≤ max`);
}

t.test('reported percentiles never exceed the recorded max, even where a bucket reaches past it', async (t) => {
  // At three significant digits values from 2048 up share buckets two wide: 2048's bucket tops
  // out at 2049, which is what HdrHistogram reports as a percentile — above the largest value.
  const recorder = new LatencyRecorder();
  for (const micros of [100, 2048, 2048]) recorder.record(micros);
  const summary = recorder.summary();
  t.equal(summary.max, 2048, 'max is the largest recorded value');
  t.equal(summary.p99, 2048, 'p99 is clamped to it');
  t.equal(recorder.percentile(99.9), 2048, 'and so is any percentile asked for');
  t.equal(summary.p50, 2048, 'p50 lies in the same bucket');
  checkOrdered(t, summary, 'three values');
  // Below 2048 every value has its own bucket: nothing to clamp, percentiles are exact.
  const exact = new LatencyRecorder();
  for (let micros = 1; micros <= 1000; micros++) exact.record(micros);
  t.strictSame([exact.percentile(50), exact.percentile(99), exact.summary().max], [500, 990, 1000]);
  checkOrdered(t, exact.summary(), '1..1000');
});

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
  for (const scenario of ['meta', 'tasks', 'seats', 'quota', 'sealed', 'login', 'ping'] as const) {
    const result = await runBench({ port: server.port, scenario, connections: 2, pipeline: 2, warmupMs: 0, durationMs: 5_000, count: 200, progress: false });
    t.same(result.errors, {}, `${scenario}: no errors`);
    t.ok(result.ok >= 200, `${scenario}: at least the counted requests were answered`);
    if (scenario === 'tasks') t.ok((result.extra.completed ?? 0) > 0, 'tasks: some deferred tasks completed');
    if (scenario === 'seats') t.ok((result.extra.granted ?? 0) > 0 && (result.extra.none ?? 0) > 0, 'seats: taken and given back');
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

t.test('over HTTP and WebSocket too, when rotor has those carriers', async (t) => {
  let server: BenchServer;
  try {
    server = await startRotorServer({ user: 'bench', password: 'bench', http: true });
  } catch (err) {
    if (err instanceof StoreUnavailable) {
      t.pass(`skipped: ${err.message}`);
      return;
    }
    throw err;
  }
  t.teardown(() => server.close());
  for (const carrier of ['http', 'ws'] as const) {
    const result = await runBench({ carrier, port: server.httpPort!, connections: 2, pipeline: 4, warmupMs: 0, durationMs: 5_000, count: 200, progress: false });
    t.same(result.errors, {}, `${carrier}: no errors`);
    t.ok(result.ok >= 200, `${carrier}: the counted requests were answered`);
  }
});

t.test('the bare node:http ceiling answers the HTTP load generator', async (t) => {
  const server = await startHttpEchoServer('bench');
  t.teardown(() => server.close());
  const result = await runBench({ carrier: 'http', port: server.port, connections: 1, pipeline: 4, warmupMs: 0, durationMs: 5_000, count: 100, progress: false });
  t.same(result.errors, {});
  t.ok(result.ok >= 100);
});

t.test('HTTP mapping: frames become requests, responses become frames, split anywhere', async (t) => {
  t.equal(frameToHttp('GET /hello ROTOR/1\r\nToken: a.b.c\r\n\r\n'), 'GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nToken: a.b.c\r\n\r\n');
  t.equal(
    frameToHttp('PUT /rotor/token ROTOR/1\r\nToken: t\r\nBIN-Length: 2\r\n\r\n{}'),
    'PUT /rotor/token HTTP/1.1\r\nHost: 127.0.0.1\r\nToken: t\r\nContent-Length: 2\r\n\r\n{}',
  );
  const bytes = Buffer.from('HTTP/1.1 200 OK\r\nToken: x\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 401 Unauthorized\r\nError: ROTOR_E_TOKEN_REUSED\r\nContent-Length: 0\r\n\r\n');
  for (let split = 0; split <= bytes.length; split++) {
    const reader = new HttpResponseReader();
    const frames = [...reader.push(bytes.subarray(0, split)).frames, ...reader.push(bytes.subarray(split)).frames];
    t.equal(frames.length, 2, `split at ${split}: two responses`);
    t.equal(frames[0].body?.toString(), 'hello');
    t.same(frames[1].headers, [['Error', 'ROTOR_E_TOKEN_REUSED']]);
  }
});

t.test('the lean response reader reads what the codec writes, split anywhere', async (t) => {
  const { ResponseReader } = await import('../../src/bench/reader.ts');
  const replies = [...echoReplies('bench').values()];
  const bytes = Buffer.concat([...replies, serializeFrame({ kind: 'response', status: 401, reason: 'Unauthorized', headers: [['Error', 'ROTOR_E_TOKEN_REUSED']], body: undefined })]);
  for (let split = 0; split <= bytes.length; split += 7) {
    const reader = new ResponseReader();
    const frames = [...reader.push(bytes.subarray(0, split)).frames, ...reader.push(bytes.subarray(split)).frames];
    t.equal(frames.length, replies.length + 1, `split at ${split}`);
    for (let i = 0; i < replies.length; i++) t.same(serializeFrame(frames[i]), replies[i], `reply ${i} reads back to its own bytes`);
    t.same(frames.at(-1)!.headers, [['Error', 'ROTOR_E_TOKEN_REUSED']]);
  }
  t.match(new ResponseReader().push(Buffer.from('HTTP/1.1 200 OK\r\n\r\n')).error, /bad start line/);
});
