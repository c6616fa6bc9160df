/**
 * One connection (or many at once) must not hold the event loop: a sweep that times out many
 * connections closes them in bounded batches across turns, and a peer that pipelines thousands
 * of frames gets at most a bounded number parsed and queued at a time, so a fresh client is
 * served in between. Counts and event order, no clocks.
 */
import t from 'tap';
import { StreamConnection } from '../../src/transport/connection.ts';
import { Sweeper } from '../../src/transport/sweep.ts';
import type { StreamListener } from '../../src/transport/tcp.ts';
import { getHeader, type Frame } from '../../src/wire/index.ts';
import { parseFrames, parseHttpResponses, Probe, startServer, until, type TestServer } from './helpers.ts';

const PING = Buffer.from('GET /rotor/ping ROTOR/1\r\n\r\n');

/** Counts calls made in one synchronous stretch of code (one turn's batch): a run ends when the microtask queue runs. */
function runCounter(): { hit: () => void; runs: number[] } {
  const runs: number[] = [];
  let current = 0;
  return {
    runs,
    hit: () => {
      if (current === 0) queueMicrotask(() => {
        runs.push(current);
        current = 0;
      });
      current++;
    },
  };
}

t.test('Sweeper: due items are acted on at most batchSize per turn, each once', async (t) => {
  const BATCH = 7;
  const counter = runCounter();
  const items = Array.from({ length: 50 }, (_, i) => ({ i, due: true, acted: 0 }));
  const sweeper = new Sweeper(
    () => items,
    (item) => item.due,
    (item) => {
      counter.hit();
      item.acted++;
      item.due = false;
    },
    { intervalMs: 5, batchSize: BATCH },
  );
  await until(() => items.every((item) => item.acted > 0));
  sweeper.stop();
  t.ok(counter.runs.every((n) => n <= BATCH), `every turn acted on at most ${BATCH}: ${counter.runs.join(' ')}`);
  t.ok(counter.runs.length >= Math.ceil(items.length / BATCH), 'over several turns');
  t.ok(items.every((item) => item.acted === 1), 'each item once, though it stayed due until acted on');
});

t.test('Sweeper: an item that is no longer due when its turn comes is left alone', async (t) => {
  const items = Array.from({ length: 20 }, () => ({ due: true, acted: 0 }));
  let checks = 0;
  const sweeper = new Sweeper(
    () => items,
    (item) => {
      checks++;
      return item.due;
    },
    (item) => {
      item.acted++;
      // Acting on the first one makes every other one not due (as a frame arriving would).
      for (const other of items) other.due = false;
    },
    { intervalMs: 5, batchSize: 1 },
  );
  await until(() => checks > 3 * items.length);
  sweeper.stop();
  t.equal(items.reduce((sum, item) => sum + item.acted, 0), 1, 'only the first was acted on');
});

t.test('mass idle timeouts: closed in batches of connection.sweepBatchSize, every one with its error frame', async (t) => {
  const BATCH = 16;
  const COUNT = 120;
  const server = await startServer({ config: { connection: { idleTimeoutMs: 400, sweepIntervalMs: 100, sweepBatchSize: BATCH } } });
  t.teardown(() => server.close());
  const counter = runCounter();
  const original = StreamConnection.prototype.fail;
  StreamConnection.prototype.fail = function (this: StreamConnection, ...args: Parameters<StreamConnection['fail']>) {
    counter.hit();
    return original.apply(this, args);
  };
  t.teardown(() => {
    StreamConnection.prototype.fail = original;
  });

  const probes: Probe[] = [];
  for (let i = 0; i < COUNT; i++) probes.push(await Probe.open(server.tcpPort));
  t.teardown(() => probes.forEach((p) => p.socket.destroy()));
  await until(() => probes.every((p) => p.closed), 10_000);
  const codes = probes.map((p) => parseFrames(p.bytes).map((f) => getHeader(f, 'Error')).join());
  t.equal(codes.filter((c) => c === 'ROTOR_E_IDLE_TIMEOUT').length, COUNT, 'every connection got ROTOR_E_IDLE_TIMEOUT, then the close');
  t.equal(counter.runs.reduce((a, b) => a + b, 0), COUNT, 'one close each');
  t.ok(counter.runs.every((n) => n <= BATCH), `at most ${BATCH} closed per turn: ${counter.runs.join(' ')}`);
});

t.test('a pipeliner: at most 2 × maxInFlight frames held at a time, every reply in order', async (t) => {
  const MAX_IN_FLIGHT = 16;
  const server = await startServer({ config: { connection: { maxInFlight: MAX_IN_FLIGHT } } });
  t.teardown(() => server.close());
  const N = 5_000;
  // Two kinds of reply, so the order shows.
  const kinds = [PING, Buffer.from('GET /rotor/nowhere ROTOR/1\r\n\r\n')];
  const probe = await Probe.open(server.tcpPort);
  t.teardown(() => probe.socket.destroy());
  probe.socket.write(Buffer.concat(Array.from({ length: N }, (_, i) => kinds[i % 3 === 0 ? 1 : 0])));
  await until(() => parseFrames(probe.bytes).length >= N, 20_000);
  const statuses = parseFrames(probe.bytes).map((f) => f.status);
  t.strictSame(statuses, Array.from({ length: N }, (_, i) => (i % 3 === 0 ? 404 : 200)), 'every reply, in order');
  const peak = (server.server.tcp as StreamListener).peakHeld;
  t.ok(peak.frames > MAX_IN_FLIGHT, `the connection did queue frames behind the in-flight ones (${peak.frames})`);
  t.ok(peak.frames <= 2 * MAX_IN_FLIGHT, `never more than 2 × maxInFlight frames held: ${peak.frames}`);
});

/** How a carrier takes a burst of pipelined pings, a fresh client's ping, and answers them. */
const PIPELINERS = [
  {
    name: 'TCP',
    port: (server: TestServer) => server.tcpPort,
    listener: (server: TestServer) => server.server.tcp,
    each: 2_000, // 54 KB each: one read
    ping: PING.toString('latin1'),
    freshPing: 'GET /rotor/ping ROTOR/1\r\nX-Fresh: 1\r\n\r\n',
    statuses: (bytes: Buffer) => parseFrames(bytes).map((f) => f.status),
  },
  {
    name: 'HTTP',
    port: (server: TestServer) => server.httpPort,
    listener: (server: TestServer) => server.server.http!,
    each: 1_500, // 55 KB each: one read
    ping: 'GET /rotor/ping HTTP/1.1\r\nHost: x\r\n\r\n',
    freshPing: 'GET /rotor/ping HTTP/1.1\r\nHost: x\r\nX-Fresh: 1\r\n\r\n',
    statuses: (bytes: Buffer) => parseHttpResponses(bytes).map((r) => r.status),
  },
];

for (const carrier of PIPELINERS) {
  t.test(`${carrier.name}: peers pipelining without reading do not keep a fresh client waiting for their work`, async (t) => {
    const PEERS = 10;
    const EACH = carrier.each;
    const server = await startServer();
    t.teardown(() => server.close());
    const rotor = server.server.rotor;
    const dispatch = rotor.dispatch.bind(rotor);
    let pipelined = 0;
    rotor.dispatch = (frame: Frame) => {
      if (frame.kind === 'request' && frame.headers.length === 0) pipelined++;
      return dispatch(frame);
    };

    const peers: Probe[] = [];
    for (let i = 0; i < PEERS; i++) peers.push(await Probe.open(carrier.port(server)));
    const fresh = await Probe.open(carrier.port(server));
    t.teardown(() => [...peers, fresh].forEach((p) => p.socket.destroy()));
    for (const peer of peers) peer.socket.pause(); // they do not read their replies (yet)
    await until(() => carrier.listener(server).connections === PEERS + 1);

    let pipelinedWhenFreshAnswered = -1;
    fresh.socket.once('data', () => (pipelinedWhenFreshAnswered = pipelined));
    // All in one synchronous stretch: every peer's burst is in the server's socket buffers before the fresh ping.
    const burst = Buffer.from(carrier.ping.repeat(EACH), 'latin1');
    for (const peer of peers) peer.socket.write(burst);
    fresh.socket.write(carrier.freshPing);

    await until(() => pipelinedWhenFreshAnswered >= 0, 20_000);
    t.strictSame(carrier.statuses(fresh.bytes), [200], 'the fresh client got its pong');
    t.ok(pipelinedWhenFreshAnswered < PEERS * EACH, `answered while the peers' work was still queued: ${pipelinedWhenFreshAnswered} of ${PEERS * EACH} of their frames dispatched`);

    // The peers' work was real and is all done once they read.
    for (const peer of peers) peer.socket.resume();
    await until(() => peers.every((p) => carrier.statuses(p.bytes).length === EACH), 20_000);
    t.equal(pipelined, PEERS * EACH, 'every pipelined frame was answered in the end');
  });
}
