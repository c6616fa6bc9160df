/**
 * The HTTP mapping in detail: which headers reach the frame and how, bodies, the POST fallback,
 * rotor's protocol errors over HTTP, limits, pipelining and the in-flight cap, timeouts, the
 * connection cap and graceful close. Raw sockets, so nothing is hidden by a client library.
 */
import t from 'tap';
import { clientErrorCode, frameHead } from '../../src/transport/http.ts';
import { DEFAULTS } from '../../src/config/defaults.ts';
import {
  exchangeRaw,
  heldApp,
  loginToken,
  MAX_BODY,
  openStream,
  parseHttpResponses,
  PASSWORD,
  slowApp,
  startServer,
  until,
  USER,
  type TestServer,
} from './helpers.ts';

/** Send raw HTTP bytes on one socket; the last request should say `Connection: close`. */
const raw = async (server: TestServer, text: string | Buffer, waitMs?: number) => {
  const result = await exchangeRaw(() => openStream(server.httpPort), Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1'), waitMs);
  return { ...result, responses: parseHttpResponses(result.bytes) };
};

const echoed = (body: Buffer) => JSON.parse(body.toString()) as { verb: string; headers: Array<[string, string]>; body: string | null };

t.test('frameHead: the frame an HTTP request stands for', async (t) => {
  const wire = DEFAULTS.wire;
  const head = frameHead('GET', '/a?b=1', ['Host', 'x', 'token', 'T', 'Connection', 'keep-alive, X-Hop', 'X-Hop', '1', 'X-Kept', 'v', 'content-type', 'text/plain'], wire);
  t.same(head, { frame: { kind: 'request', verb: 'GET', path: '/a?b=1', headers: [['Token', 'T'], ['X-Kept', 'v'], ['Content-Type', 'text/plain']], body: undefined } }, 'hop-by-hop and framing dropped, rotor names canonical');
  t.same(frameHead('POST', '/x', ['X-Rotor-Verb', 'FETCH'], wire), { frame: { kind: 'request', verb: 'FETCH', path: '/x', headers: [], body: undefined } }, 'POST + X-Rotor-Verb');
  t.same(frameHead('GET', 'http://example.com/p?q', [], wire), { frame: { kind: 'request', verb: 'GET', path: '/p?q', headers: [], body: undefined } }, 'absolute form: only path and query');
  t.same(frameHead('GET', '/x', ['X-Rotor-Verb', 'PUT'], wire), { code: 'ROTOR_E_BAD_REQUEST' }, 'X-Rotor-Verb on a GET');
  t.same(frameHead('POST', '/x', ['X-Rotor-Verb', 'put'], wire), { code: 'ROTOR_E_BAD_START_LINE' }, 'a verb rotor does not accept');
  t.same(frameHead('POST', '/x', ['X-Rotor-Verb', 'PUT', 'x-rotor-verb', 'GET'], wire), { code: 'ROTOR_E_DUPLICATE_HEADER' }, 'X-Rotor-Verb twice');
  t.same(frameHead('GET', '/x', ['A', '1', 'a', '2'], wire), { code: 'ROTOR_E_DUPLICATE_HEADER' }, 'a header twice, in any case');
  t.same(frameHead('GET', '/x', ['X_Y', '1'], wire), { code: 'ROTOR_E_BAD_HEADER' }, 'a name HTTP allows and rotor does not');
  t.same(frameHead('GET', '/x', ['BIN-Length', '3'], wire), { code: 'ROTOR_E_BAD_HEADER' }, 'BIN-Length over HTTP');
  t.same(frameHead('GET', '/x', ['X', Buffer.from([0xff]).toString('latin1')], wire), { code: 'ROTOR_E_BAD_HEADER' }, 'a value that is not UTF-8');
  t.same(frameHead('GET', '/ü', [], wire), { code: 'ROTOR_E_BAD_START_LINE' }, 'a path that is not visible ASCII');
  const many = Array.from({ length: wire.maxHeaders + 1 }, (_, i) => [`H${i}`, 'v']).flat();
  t.same(frameHead('GET', '/x', many, wire), { code: 'ROTOR_E_TOO_MANY_HEADERS' }, 'more headers than the wire limit');
  const utf8 = frameHead('GET', '/x', ['X-Name', Buffer.from('Jürgen').toString('latin1')], wire);
  t.same('frame' in utf8 && utf8.frame.headers, [['X-Name', 'Jürgen']], 'UTF-8 values arrive decoded, as on TCP');
});

t.test('clientErrorCode: node:http parse errors get the nearest rotor code', async (t) => {
  t.equal(clientErrorCode('HPE_INVALID_METHOD', false), 'ROTOR_E_BAD_START_LINE');
  t.equal(clientErrorCode('HPE_HEADER_OVERFLOW', false), 'ROTOR_E_HEADERS_TOO_LARGE');
  t.equal(clientErrorCode('HPE_INVALID_CONTENT_LENGTH', false), 'ROTOR_E_BAD_LENGTH');
  t.equal(clientErrorCode('HPE_LF_EXPECTED', false), 'ROTOR_E_BAD_LINE_ENDING');
  t.equal(clientErrorCode('ERR_HTTP_REQUEST_TIMEOUT', false), 'ROTOR_E_HEADER_TIMEOUT');
  t.equal(clientErrorCode('ERR_HTTP_REQUEST_TIMEOUT', true), 'ROTOR_E_FRAME_TIMEOUT');
});

t.test('over the wire', async (t) => {
  const server = await startServer();
  t.teardown(() => server.close());

  t.test('headers, bodies and the POST fallback reach the handler as frames', async (t) => {
    const token = await loginToken(server);
    const { responses } = await raw(
      server,
      `GET /echo HTTP/1.1\r\nHost: x\r\ntoken: ${token}\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nX-Kept: yes\r\n\r\n`,
    );
    t.equal(responses.length, 1);
    const token2 = responses[0].header('token')!;
    const first = echoed(responses[0].body);
    t.same(first.headers, [['Token', token], ['X-Kept', 'yes']], 'Token canonical, hop-by-hop and Host gone');
    t.equal(first.body, null, 'no Content-Length, no chunks: no body');
    t.equal(responses[0].header('cache-control'), 'no-store', 'never cached');
    t.equal(responses[0].header('date'), undefined, 'no Date: replays are byte-identical');

    const empty = await raw(server, `POST /echo HTTP/1.1\r\nHost: x\r\nToken: ${token2}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    t.equal(echoed(empty.responses[0].body).body, '', 'Content-Length: 0 is an empty body');
    const token3 = empty.responses[0].header('token')!;
    const chunked = await raw(
      server,
      `POST /echo HTTP/1.1\r\nHost: x\r\nToken: ${token3}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n`,
    );
    t.equal(Buffer.from(echoed(chunked.responses[0].body).body!, 'base64').toString(), 'abcde', 'a chunked body arrives whole');
    const token4 = chunked.responses[0].header('token')!;
    const fallback = await raw(server, `POST /echo HTTP/1.1\r\nHost: x\r\nToken: ${token4}\r\nX-Rotor-Verb: FETCH\r\nConnection: close\r\n\r\n`);
    t.equal(echoed(fallback.responses[0].body).verb, 'FETCH', 'POST + X-Rotor-Verb: FETCH is a FETCH frame');
    t.equal(echoed(fallback.responses[0].body).body, null, 'a POST without a body is a frame without a body');
  });

  t.test('a replay is the byte-identical HTTP response', async (t) => {
    const token = await loginToken(server);
    const request = `GET /hello HTTP/1.1\r\nHost: x\r\nToken: ${token}\r\nConnection: close\r\n\r\n`;
    const first = await raw(server, request);
    const again = await raw(server, request);
    t.equal(first.responses[0].status, 200);
    t.same(again.bytes, first.bytes, 'the same bytes, token and all');
  });

  t.test('rotor protocol errors: their code, then the connection closes', async (t) => {
    const token = await loginToken(server);
    const duplicate = await raw(server, `GET /hello HTTP/1.1\r\nHost: x\r\nToken: ${token}\r\ntoken: ${token}\r\n\r\nGET /rotor/ping HTTP/1.1\r\nHost: x\r\n\r\n`);
    t.same(
      duplicate.responses.map((r) => [r.status, r.header('error'), r.header('connection')]),
      [[400, 'ROTOR_E_DUPLICATE_HEADER', 'close']],
      'duplicate header: 400, and the pipelined request after it is not answered',
    );
    t.ok(duplicate.closed, 'closed');
    const manyHeaders = Array.from({ length: 65 }, (_, i) => `H${i}: v\r\n`).join('');
    const tooMany = await raw(server, `GET /hello HTTP/1.1\r\nHost: x\r\n${manyHeaders}\r\n`);
    t.same([tooMany.responses[0]?.status, tooMany.responses[0]?.header('error')], [431, 'ROTOR_E_TOO_MANY_HEADERS'], 'too many headers');
    const rotorBytes = await raw(server, 'GET /hello ROTOR/1\r\n\r\n');
    t.same([rotorBytes.responses[0]?.status, rotorBytes.responses[0]?.header('error')], [400, 'ROTOR_E_BAD_START_LINE'], 'a TCP frame on the HTTP port');
    const notPost = await raw(server, `GET /hello HTTP/1.1\r\nHost: x\r\nX-Rotor-Verb: PUT\r\n\r\nGET /rotor/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    t.same(
      notPost.responses.map((r) => [r.status, r.header('error') ?? null]),
      [[400, 'ROTOR_E_BAD_REQUEST'], [200, null]],
      'X-Rotor-Verb on a GET is an exchange error: the connection lives on',
    );
  });

  t.test('bodies over the limit are refused before they are read', async (t) => {
    const tooLong = await raw(server, `POST /reverse HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY + 1}\r\nExpect: 100-continue\r\n\r\n`);
    t.equal(tooLong.bytes.toString('latin1').includes('100 Continue'), false, 'no 100 Continue for a body that will be refused');
    t.same([tooLong.responses[0]?.status, tooLong.responses[0]?.header('error')], [413, 'ROTOR_E_BODY_TOO_LARGE']);
    const chunk = 'x'.repeat(8192);
    let chunked = `POST /reverse HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`;
    for (let sent = 0; sent <= MAX_BODY; sent += chunk.length) chunked += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
    const cut = await raw(server, chunked);
    t.same([cut.responses[0]?.status, cut.responses[0]?.header('error')], [413, 'ROTOR_E_BODY_TOO_LARGE'], 'a chunked body is cut at the limit');
    const fits = await raw(server, `POST /rotor/login HTTP/1.1\r\nHost: x\r\nUser: ${USER}\r\nPassword: ${PASSWORD}\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n{}`);
    t.match(fits.bytes.toString('latin1'), /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, 'a body within the limit is invited');
  });

  t.test('the HTML envelope', async (t) => {
    const page = await raw(server, `GET /hello HTTP/1.1\r\nHost: x\r\nToken: nonsense\r\nAccept: text/html\r\nConnection: close\r\n\r\n`);
    const response = page.responses[0];
    t.equal(response.status, 200, 'always 200: the rotor status is inside');
    t.equal(response.header('content-type'), 'text/html; charset=utf-8');
    t.match(response.body.toString(), /<meta name="rotor-status" content="401">/);
    t.match(response.body.toString(), /<meta name="rotor-header" content="Error: ROTOR_E_TOKEN_INVALID">/);
  });
});

t.test('pipelined requests: answered in order, at most maxInFlight dispatched at once', async (t) => {
  const { app: slow, most } = slowApp();
  const server = await startServer({ app: slow, config: { connection: { maxInFlight: 2 } } });
  t.teardown(() => server.close());
  const tokens = await Promise.all(Array.from({ length: 6 }, () => loginToken(server)));
  const text = tokens.map((token, i) => `GET /slow/${i} HTTP/1.1\r\nHost: x\r\nToken: ${token}\r\n${i === 5 ? 'Connection: close\r\n' : ''}\r\n`).join('');
  const { responses } = await raw(server, text);
  t.same(
    responses.map((r) => r.body.toString()),
    tokens.map((_, i) => `/slow/${i}`),
    'in request order, though later ones finish first',
  );
  t.equal(most(), 2, 'two at once, never more');
});

t.test('header and body deadlines', async (t) => {
  const server = await startServer({ config: { connection: { headerTimeoutMs: 300, frameTimeoutMs: 600, sweepIntervalMs: 50 } } });
  t.teardown(() => server.close());
  const headers = await raw(server, 'GET /hello HTTP/1.1\r\nHost: x\r\n', 2_000);
  t.same([headers.responses[0]?.status, headers.responses[0]?.header('error')], [408, 'ROTOR_E_HEADER_TIMEOUT'], 'a header block that never ends');
  const body = await raw(server, 'POST /reverse HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc', 2_000);
  t.same([body.responses[0]?.status, body.responses[0]?.header('error')], [408, 'ROTOR_E_FRAME_TIMEOUT'], 'a body that never ends');
});

t.test('the connection cap and graceful close', async (t) => {
  const { app: held, release } = heldApp();
  const server = await startServer({ app: held, config: { connection: { maxConnections: 1 } } });
  t.teardown(() => server.close());
  const token = await loginToken(server);
  const first = await openStream(server.httpPort);
  const chunks: Buffer[] = [];
  first.on('data', (chunk: Buffer) => chunks.push(chunk));
  const firstClosed = new Promise((resolve) => first.once('close', resolve));
  first.write(`GET /held HTTP/1.1\r\nHost: x\r\nToken: ${token}\r\n\r\n`);
  await until(() => server.server.http!.connections === 1);
  const second = await raw(server, 'GET /rotor/ping HTTP/1.1\r\nHost: x\r\n\r\n');
  t.same([second.responses[0]?.status, second.responses[0]?.header('error')], [503, 'ROTOR_E_TOO_MANY_CONNECTIONS'], 'over the cap: 503');

  const closing = server.close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  release();
  await closing;
  await firstClosed;
  const [answer] = parseHttpResponses(Buffer.concat(chunks));
  t.same([answer?.status, answer?.body.toString(), answer?.header('connection')], [200, 'done', 'close'], 'the request in flight was answered, then the socket closed');
});

t.test('a peer that does not read its responses is dropped after drainTimeoutMs', async (t) => {
  const server = await startServer({ config: { connection: { drainTimeoutMs: 300, sweepIntervalMs: 50 } } });
  t.teardown(() => server.close());
  const token = await loginToken(server);
  const socket = await openStream(server.httpPort);
  t.teardown(() => socket.destroy());
  socket.pause();
  socket.on('error', () => {});
  // The same request over and over: the first rotates, the rest are replays, each reply 60 KB.
  socket.write(`GET /big HTTP/1.1\r\nHost: x\r\nToken: ${token}\r\n\r\n`.repeat(400));
  await until(() => server.server.http!.connections === 1);
  const start = Date.now();
  // Seen from the server: a paused client socket never reads the close.
  await until(() => server.server.http!.connections === 0, 5_000);
  t.ok(Date.now() - start >= 300, `dropped, not before the drain timeout (${Date.now() - start} ms)`);
});
