/**
 * The WebSocket carrier in detail: one frame per binary message and nothing else, replies in
 * request order, the in-flight cap, keepalive, idle timeout, graceful close.
 */
import t from 'tap';
import WebSocket from 'ws';
import { RotorClient, TransportError, wsConnect } from '../../src/client/index.ts';
import { closeCodeFor } from '../../src/transport/ws.ts';
import { getHeader } from '../../src/wire/index.ts';
import { heldApp, loginToken, until, MAX_BODY, parseFrames, PASSWORD, slowApp, startServer, USER, wsExchangeRaw, type TestServer } from './helpers.ts';

const PING = Buffer.from('GET /rotor/ping ROTOR/1\r\n\r\n');
const url = (server: TestServer, path = '/rotor/ws') => `ws://127.0.0.1:${server.httpPort}${path}`;

const summary = (result: Awaited<ReturnType<typeof wsExchangeRaw>>) => ({
  replies: result.messages.map((message) => {
    const frames = parseFrames(message);
    return frames.length === 1 ? [frames[0].status, getHeader(frames[0], 'Error') ?? null] : `${frames.length} frames`;
  }),
  close: [result.closeCode, result.closeReason],
});

t.test('close codes', async (t) => {
  t.equal(closeCodeFor('ROTOR_E_BAD_START_LINE'), 1002, 'a malformed message: protocol error');
  t.equal(closeCodeFor('ROTOR_E_BODY_TOO_LARGE'), 1009, 'too big');
  t.equal(closeCodeFor('ROTOR_E_TOO_MANY_CONNECTIONS'), 1013, 'try again later');
  t.equal(closeCodeFor('ROTOR_E_SHUTTING_DOWN'), 1001, 'going away');
  t.equal(closeCodeFor('ROTOR_E_IDLE_TIMEOUT'), 1000, 'normal');
});

t.test('messages that are not exactly one frame', async (t) => {
  const server = await startServer();
  t.teardown(() => server.close());
  const cases: Array<[string, Array<Buffer | string>, unknown]> = [
    ['a text message', ['GET /rotor/ping ROTOR/1\r\n\r\n'], { replies: [[400, 'ROTOR_E_BAD_START_LINE']], close: [1002, 'ROTOR_E_BAD_START_LINE'] }],
    ['an empty message', [Buffer.alloc(0)], { replies: [[400, 'ROTOR_E_BAD_START_LINE']], close: [1002, 'ROTOR_E_BAD_START_LINE'] }],
    ['two frames in one message', [Buffer.concat([PING, PING])], { replies: [[400, 'ROTOR_E_BAD_START_LINE']], close: [1002, 'ROTOR_E_BAD_START_LINE'] }],
    ['a frame and trailing bytes', [Buffer.concat([PING, Buffer.from('GET')])], { replies: [[400, 'ROTOR_E_BAD_START_LINE']], close: [1002, 'ROTOR_E_BAD_START_LINE'] }],
    ['a frame cut short', [PING.subarray(0, 10)], { replies: [[400, 'ROTOR_E_TRUNCATED']], close: [1002, 'ROTOR_E_TRUNCATED'] }],
    ['a duplicate header', [Buffer.from('GET /rotor/ping ROTOR/1\r\nA: 1\r\na: 2\r\n\r\n')], { replies: [[400, 'ROTOR_E_DUPLICATE_HEADER']], close: [1002, 'ROTOR_E_DUPLICATE_HEADER'] }],
    [
      'a good frame, then garbage: the reply owed comes first',
      [PING, Buffer.from('HELLO\r\n\r\n'), PING],
      { replies: [[200, null], [400, 'ROTOR_E_BAD_START_LINE']], close: [1002, 'ROTOR_E_BAD_START_LINE'] },
    ],
  ];
  for (const [name, messages, expected] of cases) {
    t.same(summary(await wsExchangeRaw(url(server), undefined, ...messages)), expected, name);
  }
  const huge = await wsExchangeRaw(url(server), undefined, Buffer.alloc(server.config.wire.maxHeaderBytes + MAX_BODY + 1));
  t.same(summary(huge), { replies: [], close: [1009, ''] }, 'over maxPayload: ws closes 1009 before reading it');
});

t.test('the upgrade itself', async (t) => {
  const server = await startServer();
  t.teardown(() => server.close());
  await t.rejects(wsConnect(url(server, '/elsewhere'))(), TransportError, 'another path: refused');
  await t.rejects(wsConnect(url(server, '/elsewhere'))(), /HTTP 404 ROTOR_E_NOT_FOUND/, 'with 404 and the rotor code');
  const client = new RotorClient({ connect: wsConnect(url(server)) });
  t.teardown(() => client.close());
  await client.login(USER, PASSWORD);
  t.equal((await client.request('GET', '/hello')).status, 200, 'the WebSocket path works');
});

t.test('replies in request order, at most maxInFlight at once', async (t) => {
  const { app: slow, most } = slowApp();
  const server = await startServer({ app: slow, config: { connection: { maxInFlight: 2 } } });
  t.teardown(() => server.close());
  const tokens = await Promise.all(Array.from({ length: 6 }, () => loginToken(server)));
  const socket = new WebSocket(url(server), { perMessageDeflate: false });
  const replies: string[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('open', () => {
      // All in one go: they arrive together, and rotor may still start only two at a time.
      tokens.forEach((token, i) => socket.send(Buffer.from(`GET /slow/${i} ROTOR/1\r\nToken: ${token}\r\n\r\n`)));
    });
    socket.on('message', (data: Buffer) => {
      replies.push(parseFrames(data)[0].body!.toString());
      if (replies.length === tokens.length) resolve();
    });
  });
  // The server's ROTOR_E_SHUTTING_DOWN (at teardown) may still arrive before our close is through: not a reply of these.
  socket.removeAllListeners('message');
  socket.close();
  t.same(replies, tokens.map((_, i) => `/slow/${i}`), 'in request order, though later ones finish first');
  t.equal(most(), 2, 'two at once, never more');
});

t.test('keepalive, idle timeout and graceful close', async (t) => {
  const { app: held, release } = heldApp();
  const server = await startServer({
    app: held,
    config: { carriers: { wsPingIntervalMs: 100 }, connection: { idleTimeoutMs: 400, sweepIntervalMs: 50 } },
  });
  t.teardown(() => server.close());

  const deaf = new WebSocket(url(server), { perMessageDeflate: false, autoPong: false });
  const dropped = await new Promise<number>((resolve) => {
    const start = Date.now();
    deaf.once('close', () => resolve(Date.now() - start));
  });
  t.ok(dropped < 400, `a peer that answers no ping is dropped before the idle timeout (${dropped} ms)`);

  const idle = await wsExchangeRaw(url(server), undefined);
  t.same(summary(idle), { replies: [[408, 'ROTOR_E_IDLE_TIMEOUT']], close: [1000, 'ROTOR_E_IDLE_TIMEOUT'] }, 'an idle peer gets ROTOR_E_IDLE_TIMEOUT');

  const token = await loginToken(server);
  const pending = wsExchangeRaw(url(server), undefined, Buffer.from(`GET /held ROTOR/1\r\nToken: ${token}\r\n\r\n`));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const closing = server.close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  release();
  await closing;
  const result = await pending;
  t.same(
    summary(result),
    { replies: [[200, null], [503, 'ROTOR_E_SHUTTING_DOWN']], close: [1001, 'ROTOR_E_SHUTTING_DOWN'] },
    'on close: the frame in flight is answered, then ROTOR_E_SHUTTING_DOWN and 1001',
  );
});

t.test('a peer that does not read its replies is dropped after drainTimeoutMs', async (t) => {
  const server = await startServer({ config: { connection: { drainTimeoutMs: 300, sweepIntervalMs: 50 } } });
  t.teardown(() => server.close());
  const token = await loginToken(server);
  const socket = new WebSocket(url(server), { perMessageDeflate: false });
  t.teardown(() => socket.terminate());
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('open', resolve));
  socket.pause();
  // The same frame over and over: the first rotates, the rest are replays, each reply 60 KB.
  const frame = Buffer.from(`GET /big ROTOR/1\r\nToken: ${token}\r\n\r\n`);
  for (let i = 0; i < 400; i++) socket.send(frame);
  await until(() => server.server.http!.webSockets === 1);
  const start = Date.now();
  // Seen from the server: a paused client never reads the close.
  await until(() => server.server.http!.webSockets === 0, 5_000);
  t.ok(Date.now() - start >= 300, `dropped, not before the drain timeout (${Date.now() - start} ms)`);
});
