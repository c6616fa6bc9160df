/**
 * Hostile peers over real TCP: each bad input gets its documented code in one error frame and
 * then the close, and a live session on another connection keeps working through all of it.
 */
import t from 'tap';
import type { Test } from 'tap';
import { getHeader } from '../../src/wire/index.ts';
import { exampleApp } from '../../src/app/example.ts';
import { ERRORS, type ErrorCode } from '../../src/errors.ts';
import { DEFAULTS, type DeepPartial, type RotorConfig } from '../../src/config/defaults.ts';
import type { RotorApp } from '../../src/server/index.ts';
import type { StreamListener } from '../../src/transport/tcp.ts';
import { LiveSession, RawConn, ascii, request, sleep, startServer, summary, writeUntil, type TestServer } from './helpers.ts';

/** A server and a logged-in live session on it, both gone when `t` ends. */
async function serverWithLive(t: Test, config: DeepPartial<RotorConfig> = {}, app?: RotorApp): Promise<{ srv: TestServer; live: LiveSession }> {
  const srv = await startServer(config, app);
  const live = await LiveSession.open(srv.port);
  t.teardown(async () => {
    live.close();
    await srv.close();
  });
  return { srv, live };
}

/**
 * What the server holds is counted, not guessed from RSS (which a garbage collection or another
 * test's allocations move by megabytes): the most any connection held at once, in frames parsed
 * and not answered and in bytes read and not yet made into frames (src/transport/connection.ts).
 */
const peakHeld = (srv: TestServer) => (srv.server.tcp as StreamListener).peakHeld;
/** A socket read delivers at most this much (libuv reads 64 KiB at a time); rotor holds at most one read unparsed. */
const ONE_READ = 64 * 1024;

/** One error frame with `code`, its status and no body, nothing after it, then the close. */
async function expectProtocolError(t: Test, conn: RawConn, code: ErrorCode, timeoutMs = 2_000): Promise<void> {
  const frame = await conn.next(timeoutMs);
  t.strictSame(summary(frame), { status: ERRORS[code].status, error: code, body: undefined }, `error frame ${code}`);
  t.equal(getHeader(frame, 'Token'), undefined, 'no token on a protocol error');
  await conn.waitClosed(3_000);
  t.equal(conn.frames.length, 0, 'nothing after the error frame');
}

/** The live session's connection stayed open, and a real exchange on it still rotates. */
async function expectLive(t: Test, live: LiveSession): Promise<void> {
  t.notOk(live.conn.closed, 'the live session connection is still open');
  t.strictSame(await live.hello(), { status: 200, body: 'hello, alice', rotated: true, error: undefined }, 'the live session still works');
}

async function expectPing(t: Test, port: number): Promise<void> {
  const conn = await RawConn.connect(port);
  const reply = await conn.call(request('GET', '/rotor/ping'));
  t.strictSame(summary(reply), { status: 200, error: undefined, body: undefined }, 'a new client is served');
  conn.destroy();
}

/** Sends `bytes` on a fresh connection and expects exactly the error `code`, then the close. */
async function sendBad(t: Test, port: number, bytes: Buffer, code: ErrorCode): Promise<void> {
  const conn = await RawConn.connect(port);
  conn.write(bytes);
  await expectProtocolError(t, conn, code);
}

t.test('malformed frames', async (t) => {
  const { srv, live } = await serverWithLive(t);

  const cases: Array<{ name: string; bytes: Buffer; code: ErrorCode }> = [
    { name: 'garbage start line', bytes: ascii('HELLO THERE\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
    { name: 'binary garbage (a TLS hello)', bytes: Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0d, 0x0a]), code: 'ROTOR_E_BAD_START_LINE' },
    { name: 'an HTTP request', bytes: ascii('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'), code: 'ROTOR_E_BAD_VERSION' },
    { name: 'header without colon', bytes: ascii('GET /rotor/ping ROTOR/1\r\nNoColonHere\r\n\r\n'), code: 'ROTOR_E_BAD_HEADER' },
    { name: 'BIN-Length with a plus sign', bytes: ascii('POST /reverse ROTOR/1\r\nBIN-Length: +3\r\n\r\nabc'), code: 'ROTOR_E_BAD_LENGTH' },
    { name: 'BIN-Length with a minus sign', bytes: ascii('POST /reverse ROTOR/1\r\nBIN-Length: -3\r\n\r\nabc'), code: 'ROTOR_E_BAD_LENGTH' },
    { name: 'BIN-Length with a space inside', bytes: ascii('POST /reverse ROTOR/1\r\nBIN-Length: 1 0\r\n\r\n0123456789'), code: 'ROTOR_E_BAD_LENGTH' },
    { name: 'BIN-Length with 20 digits', bytes: ascii('POST /reverse ROTOR/1\r\nBIN-Length: 12345678901234567890\r\n\r\nabc'), code: 'ROTOR_E_BAD_LENGTH' },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      await sendBad(t, srv.port, c.bytes, c.code);
      await expectLive(t, live);
    });
  }

  await t.test('BIN-Length over the body limit is refused before any body byte is sent', async (t) => {
    const conn = await RawConn.connect(srv.port);
    conn.write(ascii(`POST /reverse ROTOR/1\r\nBIN-Length: ${DEFAULTS.wire.maxBodyBytes + 1}\r\n\r\n`));
    await expectProtocolError(t, conn, 'ROTOR_E_BODY_TOO_LARGE');
    await expectLive(t, live);
  });

  await t.test('the replies owed before a bad frame come first, then the error', async (t) => {
    const conn = await RawConn.connect(srv.port);
    // More frames than maxInFlight (64) ahead of the bad one: some of them wait their turn.
    const pings = 300;
    const good = Array.from({ length: pings }, () => request('GET', '/rotor/ping'));
    conn.write(Buffer.concat([...good, request('GET', '/hello', { Token: live.token }), ascii('BAD\r\n\r\n'), request('GET', '/rotor/ping')]));
    const answered = [];
    for (let i = 0; i < pings; i++) answered.push(summary(await conn.next()).status);
    t.strictSame(answered, Array(pings).fill(200), 'every ping answered');
    const hello = await conn.next();
    t.strictSame(summary(hello), { status: 200, error: undefined, body: 'hello, alice' }, 'hello answered');
    live.token = getHeader(hello, 'Token')!;
    await expectProtocolError(t, conn, 'ROTOR_E_BAD_START_LINE');
    await expectLive(t, live);
  });

  await t.test('a body cut short, then a close: no reply, the server stays healthy', async (t) => {
    const conn = await RawConn.connect(srv.port);
    conn.write(ascii(`POST /reverse ROTOR/1\r\nToken: ${live.token}\r\nBIN-Length: 100\r\n\r\nonly some of it`));
    await sleep(50);
    conn.socket.end();
    await conn.waitClosed();
    t.equal(conn.bytesReceived, 0, 'ROTOR_E_TRUNCATED is only logged: the peer has gone');
    // The cut request never reached the session: the token it carried is still the newest.
    await expectLive(t, live);
    await expectPing(t, srv.port);
  });

  await t.test('a header cut short, then a reset: the server stays healthy', async (t) => {
    const conn = await RawConn.connect(srv.port);
    conn.write(ascii('GET /hello ROTOR/1\r\nTok'));
    await sleep(50);
    conn.socket.resetAndDestroy();
    await conn.waitClosed();
    await live.conn.until(() => srv.server.tcp.connections === 1, 2_000, 'the server to let go of the connection');
    t.equal(srv.server.tcp.connections, 1, 'the server let go of the connection');
    await expectLive(t, live);
  });
});

t.test('a 10 MB header block is refused early and never buffered', async (t) => {
  const { srv, live } = await serverWithLive(t);
  const TOTAL = 10 * 1024 * 1024;
  const CHUNK = 64 * 1024;

  const blocks: Array<{ name: string; head: string; chunk: Buffer; code: ErrorCode }> = [
    // One endless header line: over maxLineBytes.
    { name: 'one endless line', head: 'GET /rotor/ping ROTOR/1\r\nX-Big: ', chunk: Buffer.alloc(CHUNK, 0x61), code: 'ROTOR_E_LINE_TOO_LONG' },
    // Many legal 4 KiB header lines: over maxHeaderBytes long before maxHeaders.
    {
      name: 'many 4 KiB header lines',
      head: 'GET /rotor/ping ROTOR/1\r\n',
      chunk: ascii(Array.from({ length: 16 }, (_, i) => `X-Pad-${i}: ${'v'.repeat(4096 - 12 - String(i).length)}\r\n`).join('')),
      code: 'ROTOR_E_HEADERS_TOO_LARGE',
    },
  ];
  for (const block of blocks) {
    await t.test(block.name, async (t) => {
      const conn = await RawConn.connect(srv.port);
      conn.write(ascii(block.head));
      const written = await writeUntil(conn, block.chunk, TOTAL, () => conn.frames.length > 0 || conn.serverDone);
      t.ok(written < TOTAL / 10, `the error came after ${written} of ${TOTAL} bytes`);
      await expectProtocolError(t, conn, block.code);
      // An unfinished line is all the parser keeps of a header block, and it is refused past the line limit.
      const { bytes } = peakHeld(srv);
      t.ok(bytes <= DEFAULTS.wire.maxLineBytes + ONE_READ, `at most ${bytes} bytes held, of ${written} written`);
      await expectLive(t, live);
    });
  }

  await t.test('a peer that ignores the error and writes all 10 MB: discarded, not buffered', async (t) => {
    // Half-open: the server's FIN does not stop this peer from writing.
    const conn = await RawConn.connect(srv.port, { allowHalfOpen: true });
    conn.write(ascii('GET /rotor/ping ROTOR/1\r\nX-Big: '));
    const written = await writeUntil(conn, Buffer.alloc(CHUNK, 0x62), TOTAL, () => false);
    t.ok(conn.endedAt !== 0, 'the server had ended its side');
    conn.socket.end();
    await expectProtocolError(t, conn, 'ROTOR_E_LINE_TOO_LONG');
    const { bytes } = peakHeld(srv);
    t.ok(bytes <= DEFAULTS.wire.maxLineBytes + ONE_READ, `at most ${bytes} bytes held after ${written} bytes were written`);
    await expectLive(t, live);
  });
});

t.test('100 000 tiny frames in one write: every reply, in order, with bounded work', async (t) => {
  const maxInFlight = 64;
  const { srv, live } = await serverWithLive(t, { connection: { maxInFlight } });
  // Count the frames the server works on at once (the dispatcher is what every frame goes through).
  const rotor = srv.server.rotor;
  const dispatch = rotor.dispatch.bind(rotor);
  let working = 0;
  let mostWorking = 0;
  rotor.dispatch = async (frame) => {
    working++;
    mostWorking = Math.max(mostWorking, working);
    try {
      return await dispatch(frame);
    } finally {
      working--;
    }
  };

  // Three kinds of request with three different replies, in a fixed pseudo-random order.
  const kinds = [
    { bytes: request('GET', '/rotor/ping'), reply: '200 -' },
    { bytes: request('GET', '/hello'), reply: '401 ROTOR_E_TOKEN_MISSING' },
    { bytes: request('GET', '/rotor/nowhere'), reply: '404 ROTOR_E_NOT_FOUND' },
  ];
  const N = 100_000;
  const order: number[] = [];
  let seed = 12345;
  for (let i = 0; i < N; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    order.push(seed % 3);
  }
  const bytes = Buffer.concat(order.map((k) => kinds[k].bytes));

  const conn = await RawConn.connect(srv.port);
  conn.write(bytes);
  // Takes a second or two; the long guard is for a loaded machine.
  await conn.until(() => conn.frames.length >= N || conn.closed, 40_000, `${N} replies`);
  const got = conn.frames.splice(0).map((f) => `${f.status} ${getHeader(f, 'Error') ?? '-'}`);
  t.equal(got.length, N, 'one reply per request');
  const firstWrong = got.findIndex((reply, i) => reply !== kinds[order[i]].reply);
  t.equal(firstWrong, -1, 'every reply matches its request, in order');
  t.ok(mostWorking <= maxInFlight, `at most maxInFlight (${maxInFlight}) frames worked on at once; saw ${mostWorking}`);
  // Parsed a slice at a time while fewer than maxInFlight are held: the rest of a read waits as bytes, not as frames.
  const held = peakHeld(srv);
  t.ok(held.frames <= 2 * maxInFlight, `at most 2 × maxInFlight frames held at once; saw ${held.frames}`);
  t.ok(held.bytes <= ONE_READ + DEFAULTS.wire.maxLineBytes, `at most one read and a line held as bytes; saw ${held.bytes}`);

  t.strictSame(summary(await conn.call(request('GET', '/rotor/ping'))), { status: 200, error: undefined, body: undefined }, 'the connection still works');
  await expectLive(t, live);
});

t.test('deadlines', async (t) => {
  // Distinct header and frame deadlines, so the code shows which one fired.
  const HEADER_MS = 1_500;
  const FRAME_MS = 2_000;
  const SWEEP_MS = 100;
  const { srv, live } = await serverWithLive(t, { connection: { headerTimeoutMs: HEADER_MS, frameTimeoutMs: FRAME_MS, sweepIntervalMs: SWEEP_MS } });

  /** Send `bytes` one byte every 300 ms until the server answers; returns when the reply came. */
  async function dribble(conn: RawConn, bytes: Buffer): Promise<number> {
    for (let i = 0; i < bytes.length && conn.frames.length === 0 && !conn.serverDone; i++) {
      conn.write(bytes.subarray(i, i + 1));
      await conn.until(() => conn.frames.length > 0 || conn.serverDone, 300, 'a reply').catch(() => {});
    }
    await conn.until(() => conn.frames.length > 0 || conn.closed, 1_000, 'the reply');
    return Date.now();
  }
  // The sweep runs every SWEEP_MS; allow for a loaded machine on top.
  const SLACK_MS = SWEEP_MS + 1_000;

  await t.test('one byte every 300 ms in the header block: HEADER_TIMEOUT', async (t) => {
    const conn = await RawConn.connect(srv.port);
    const started = Date.now();
    const elapsed = (await dribble(conn, request('GET', '/rotor/ping', { 'X-Slow': 'a'.repeat(40) }))) - started;
    await expectProtocolError(t, conn, 'ROTOR_E_HEADER_TIMEOUT');
    t.ok(elapsed >= HEADER_MS && elapsed < HEADER_MS + SLACK_MS, `answered after ${elapsed} ms`);
    await expectLive(t, live);
  });

  await t.test('a whole header block, then one body byte every 300 ms: FRAME_TIMEOUT', async (t) => {
    const conn = await RawConn.connect(srv.port);
    const started = Date.now();
    conn.write(ascii(`POST /reverse ROTOR/1\r\nToken: ${live.token}\r\nBIN-Length: 40\r\n\r\n`));
    const elapsed = (await dribble(conn, Buffer.alloc(40, 0x7a))) - started;
    await expectProtocolError(t, conn, 'ROTOR_E_FRAME_TIMEOUT');
    t.ok(elapsed >= FRAME_MS && elapsed < FRAME_MS + SLACK_MS, `answered after ${elapsed} ms`);
    await expectLive(t, live);
  });
});

t.test('an idle connection gets IDLE_TIMEOUT; a busy one does not', async (t) => {
  const IDLE_MS = 600;
  const SWEEP_MS = 50;
  const { srv, live } = await serverWithLive(t, { connection: { idleTimeoutMs: IDLE_MS, sweepIntervalMs: SWEEP_MS } });
  let busy = true;
  // The live session keeps talking (every 150 ms) for the whole test.
  const keepBusy = (async () => {
    while (busy) {
      await sleep(150);
      const reply = await live.conn.call(request('GET', '/rotor/ping'));
      if (reply.status !== 200) throw new Error('ping failed');
    }
  })();
  keepBusy.catch(() => {}); // a failure shows in the `await keepBusy` below
  t.teardown(() => {
    busy = false;
  });

  const silent = await RawConn.connect(srv.port);
  const started = Date.now();
  const afterPing = await RawConn.connect(srv.port);
  t.strictSame(summary(await afterPing.call(request('GET', '/rotor/ping'))), { status: 200, error: undefined, body: undefined });
  const pinged = Date.now();

  await expectProtocolError(t, silent, 'ROTOR_E_IDLE_TIMEOUT', IDLE_MS + 1_000);
  // The server's clock starts a moment before ours: allow a few ms either side.
  const elapsed = silent.closedAt - started;
  t.ok(elapsed >= IDLE_MS - 20 && elapsed < IDLE_MS + SWEEP_MS + 1_000, `the silent connection closed after ${elapsed} ms`);
  await expectProtocolError(t, afterPing, 'ROTOR_E_IDLE_TIMEOUT', IDLE_MS + 1_000);
  t.ok(afterPing.closedAt - pinged >= IDLE_MS - 20, `idle is counted from the last activity (${afterPing.closedAt - pinged} ms)`);

  busy = false;
  await keepBusy;
  await expectLive(t, live);
});

t.test('connection cap: the connection over maxConnections gets TOO_MANY_CONNECTIONS', async (t) => {
  const { srv, live } = await serverWithLive(t, { connection: { maxConnections: 2 } });
  const second = await RawConn.connect(srv.port);
  t.strictSame(summary(await second.call(request('GET', '/rotor/ping'))), { status: 200, error: undefined, body: undefined }, 'the second is served');
  const third = await RawConn.connect(srv.port);
  third.write(request('GET', '/rotor/ping')); // not answered: only the refusal is
  await expectProtocolError(t, third, 'ROTOR_E_TOO_MANY_CONNECTIONS');
  await expectLive(t, live);
  t.strictSame(summary(await second.call(request('GET', '/rotor/ping'))), { status: 200, error: undefined, body: undefined }, 'the second still is');

  second.destroy();
  await second.waitClosed();
  await live.conn.until(() => srv.server.tcp.connections === 1, 2_000, 'the server to let go of the second connection');
  await expectPing(t, srv.port);
});

t.test('a peer that never reads its replies is dropped after drainTimeoutMs', async (t) => {
  const DRAIN_MS = 500;
  const PAD = 900_000;
  const { srv, live } = await serverWithLive(t, { connection: { drainTimeoutMs: DRAIN_MS, sweepIntervalMs: 50 }, session: { maxMetaBytes: PAD + 100 } });
  // A session whose metadata is large: every GET /meta reply is about 900 KB.
  const big = await LiveSession.open(srv.port, { pad: 'x'.repeat(PAD) });
  t.teardown(() => big.close());

  const reader = await RawConn.connect(srv.port);
  reader.socket.pause(); // never reads
  // 1000 pipelined reads (the first one rotates, the rest are replays): about 900 MB of replies.
  const COUNT = 1000;
  const started = Date.now();
  reader.write(Buffer.concat(Array.from({ length: COUNT }, () => request('GET', '/meta', { Token: big.token }))));
  await live.conn.until(() => srv.server.tcp.connections === 2, DRAIN_MS + 2_000, 'the server to drop the non-reading peer');
  const dropped = Date.now() - started;
  t.ok(dropped >= DRAIN_MS, `dropped after ${dropped} ms, not before the drain timeout`);

  // What reaches the peer when it finally reads is a small part of what it asked for, then the end.
  reader.socket.resume();
  await reader.waitClosed(3_000);
  t.ok(reader.frames.length < COUNT / 10, `${reader.frames.length} of ${COUNT} replies were delivered`);

  await expectLive(t, live);
  await expectPing(t, srv.port);
});

t.test('graceful shutdown: the reply in flight is delivered, then everything closes', async (t) => {
  let handlerStarted!: () => void;
  const started = new Promise<void>((resolve) => (handlerStarted = resolve));
  const app = exampleApp();
  app.routes['GET /slow'] = async () => {
    handlerStarted();
    await sleep(300);
    return { body: 'slow but sure' };
  };
  const { srv, live } = await serverWithLive(t, { connection: { shutdownGraceMs: 5_000 } }, app);
  const idle = await RawConn.connect(srv.port);

  live.conn.write(request('GET', '/slow', { Token: live.token }));
  await started;
  const closeStarted = Date.now();
  const closed = srv.close();

  const refused = await RawConn.connect(srv.port).then(
    (conn) => {
      conn.destroy();
      return 'connected';
    },
    (err: NodeJS.ErrnoException) => err.code,
  );
  t.equal(refused, 'ECONNREFUSED', 'a new connection is refused');

  const reply = await live.conn.next(2_000);
  t.strictSame(summary(reply), { status: 200, error: undefined, body: 'slow but sure' }, 'the request in flight got its reply');
  t.ok(getHeader(reply, 'Token'), 'with its next token');
  await live.conn.waitClosed(2_000);
  await idle.waitClosed(2_000);
  t.strictSame(idle.frames.map((frame) => getHeader(frame, 'Error')), ['ROTOR_E_SHUTTING_DOWN'], 'an idle connection gets one ROTOR_E_SHUTTING_DOWN frame, then the close');
  await closed;
  const took = Date.now() - closeStarted;
  t.ok(took < 2_000, `close() finished after ${took} ms, without waiting out the grace`);
});
