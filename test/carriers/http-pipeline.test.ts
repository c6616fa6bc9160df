/**
 * node:http parses and hands over pipelined requests whatever rotor's pause says (a hostile
 * review held 100,000 on one socket, and the heap grew with them). An HTTP connection holds at
 * most HTTP_HELD_PER_IN_FLIGHT × connection.maxInFlight requests unanswered: past that it gets
 * the replies owed, then 429 ROTOR_E_TOO_MANY_PIPELINED, then the close. Counts, no clocks.
 */
import net from 'node:net';
import t from 'tap';
import type { RotorApp } from '../../src/server/index.ts';
import { HTTP_HELD_PER_IN_FLIGHT } from '../../src/transport/http-connection.ts';
import { loginToken, parseHttpResponses, startServer, testApp, until } from './helpers.ts';

const MAX_IN_FLIGHT = 2;
const CAP = HTTP_HELD_PER_IN_FLIGHT * MAX_IN_FLIGHT;

t.test(`past ${CAP} held requests: the owed answers, then ROTOR_E_TOO_MANY_PIPELINED and the close`, async (t) => {
  const base = testApp();
  const waiting: Array<() => void> = [];
  let started = 0;
  let open = false;
  const app: RotorApp = {
    tasks: base.tasks,
    routes: {
      ...base.routes,
      // Held until the test opens the gate; after that every request answers at once.
      'GET /held': () => new Promise((resolve) => (started++, open ? resolve({ body: 'done' }) : waiting.push(() => resolve({ body: 'done' })))),
    },
  };
  const server = await startServer({ app, config: { connection: { maxInFlight: MAX_IN_FLIGHT } } });
  t.teardown(() => server.close());
  const token = await loginToken(server);
  const socket = net.connect(server.httpPort, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  socket.once('close', () => (closed = true));
  // One session: the first request runs, the others wait on its lock or in the line, and once it
  // has rotated they all present the token before the newest, so each gets the replay.
  socket.write(`GET /held HTTP/1.1\r\nHost: x\r\nToken: ${token}\r\n\r\n`.repeat(CAP + 50));
  await until(() => started === 1);
  open = true;
  waiting.splice(0).forEach((release) => release());
  await until(() => closed, 20_000);
  const responses = parseHttpResponses(Buffer.concat(chunks));
  const last = responses.at(-1)!;
  t.equal(last.status, 429, 'the last answer is the refusal');
  t.equal(last.header('Error'), 'ROTOR_E_TOO_MANY_PIPELINED');
  const answered = responses.slice(0, -1);
  t.equal(answered.length, CAP, `the ${CAP} requests held were answered first`);
  t.ok(answered.every((r) => r.status === 200), 'each with its reply');
  t.equal(started, 1, 'the handler ran once: the rest were replays of its reply');
});
