/**
 * The end-to-end scenarios every carrier must pass with the same expectations and the same
 * error codes: one frame format, one dispatch path, whatever carries the bytes.
 */
import type { Test } from 'tap';
import { RotorClient, TokenReusedError, TransportError, type ClientTransport, type Connect } from '../../src/client/index.ts';
import { getHeader, serializeFrame, type Header, type RequestFrame, type ResponseFrame } from '../../src/wire/index.ts';
import { PASSWORD, USER, type Carrier } from './helpers.ts';

function request(verb: string, path: string, headers: Header[], body?: string): RequestFrame {
  return { kind: 'request', verb, path, headers, body: body === undefined ? undefined : Buffer.from(body) };
}

function token(frame: ResponseFrame): string {
  const value = getHeader(frame, 'Token');
  if (!value) throw new Error(`no Token in a ${frame.status} reply (${getHeader(frame, 'Error') ?? 'no error'})`);
  return value;
}

/** A Connect whose transports lose the response to the `nth` request after the server processed it. */
export function losing(connect: Connect, nth: number): Connect {
  let sent = 0;
  return async () => {
    const inner = await connect();
    const transport: ClientTransport = {
      async request(frame) {
        const response = await inner.request(frame);
        if (++sent === nth) {
          inner.close();
          throw new TransportError('response lost (test)');
        }
        return response;
      },
      close: () => inner.close(),
    };
    return transport;
  };
}

export function runScenarios(t: Test, carrier: Carrier, peer: Carrier): void {
  t.test(`${carrier.name}: log in, message, rotate, replay, defer, ack, fetch, reuse`, async (t) => {
    const transport = await carrier.connect();
    t.teardown(() => transport.close());
    const send = (frame: RequestFrame) => transport.request(frame);

    const login = await send(request('POST', '/rotor/login', [['User', USER], ['Password', PASSWORD]]));
    t.equal(login.status, 200, 'login: 200');
    const t1 = token(login);

    const hello = await send(request('GET', '/hello', [['Token', t1]]));
    t.equal(hello.status, 200, 'message: 200');
    t.equal(hello.body?.toString(), `hello, ${USER}`, 'message: the handler answered');
    const t2 = token(hello);
    t.not(t2, t1, 'message: a new token');

    const rotated = await send(request('PUT', '/rotor/token', [['Token', t2], ['Content-Type', 'application/json']], '{"carrier":"any"}'));
    t.equal(rotated.status, 200, 'rotate: 200');
    t.same(JSON.parse(rotated.body!.toString()), { carrier: 'any' }, 'rotate: the merged metadata');
    const t3 = token(rotated);

    const first = await send(request('GET', '/hello', [['Token', t3]]));
    const again = await send(request('GET', '/hello', [['Token', t3]]));
    t.same(serializeFrame(again), serializeFrame(first), 'lost response: the previous token gets the identical reply');
    const t4 = token(first);
    t.equal(token(again), t4, 'lost response: with the same next token');

    const deferred = await send(request('POST', '/reverse', [['Token', t4]], 'rotor'));
    t.equal(deferred.status, 202, 'defer: 202');
    const taskId = getHeader(deferred, 'Task');
    t.ok(taskId, 'defer: a Task id');
    t.ok(getHeader(deferred, 'Wait-for'), 'defer: a Wait-for hint');
    const t5 = token(deferred);

    const ack = await send(request('POST', '/rotor/ack', [['Token', t5]]));
    t.equal(ack.status, 200, 'ack: 200');
    t.equal(getHeader(ack, 'Token'), undefined, 'ack: no new token');

    let newest = t5;
    let result: ResponseFrame | undefined;
    for (let i = 0; i < 100; i++) {
      result = await send(request('GET', `/rotor/tasks/${taskId}`, [['Token', newest]]));
      newest = token(result);
      if (result.status !== 202) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    t.equal(result?.status, 200, 'task: finished');
    t.equal(result?.body?.toString(), 'rotor'.split('').reverse().join(''), 'task: its result');

    const reused = await send(request('GET', '/hello', [['Token', t1]]));
    t.equal(reused.status, 401, 'reuse: 401');
    t.equal(getHeader(reused, 'Error'), 'ROTOR_E_TOKEN_REUSED', 'reuse: ROTOR_E_TOKEN_REUSED');
    const revoked = await send(request('GET', '/hello', [['Token', newest]]));
    t.equal(getHeader(revoked, 'Error'), 'ROTOR_E_SESSION_REVOKED', 'reuse: even the newest token is dead now');
  });

  t.test(`${carrier.name}: the client library survives a lost response`, async (t) => {
    // Response 2 (the GET /hello) is lost after the server rotated; the client sends the same frame again.
    const client = new RotorClient({ connect: losing(carrier.connect, 2), retryDelayMs: 10 });
    t.teardown(() => client.close());
    await client.login(USER, PASSWORD);
    const first = client.token;
    const hello = await client.request('GET', '/hello');
    t.equal(hello.body.toString(), `hello, ${USER}`, 'the replayed reply');
    const again = await client.request('GET', '/hello');
    t.equal(again.status, 200, 'the token from the replay works (and acks)');
    const stolen = new RotorClient({ connect: carrier.connect });
    t.teardown(() => stolen.close());
    await stolen.useToken(first);
    await t.rejects(stolen.request('GET', '/hello'), TokenReusedError, 'the rotated-away token is reuse');
  });

  t.test(`${carrier.name}: bad input gets its code and leaves a session on ${peer.name} alone`, async (t) => {
    const live = new RotorClient({ connect: peer.connect });
    t.teardown(() => live.close());
    await live.login(USER, PASSWORD);
    await live.request('GET', '/hello');

    t.same(await carrier.garbage(), { status: 400, code: 'ROTOR_E_BAD_START_LINE', closed: true }, 'garbage: 400 ROTOR_E_BAD_START_LINE, then close');
    t.same(await carrier.oversized(), { status: 413, code: 'ROTOR_E_BODY_TOO_LARGE', closed: true }, 'oversized body: 413 ROTOR_E_BODY_TOO_LARGE, then close');

    const after = await live.request('GET', '/hello');
    t.equal(after.status, 200, `the session on ${peer.name} goes on`);
  });

  t.test(`${carrier.name}: a session moves to ${peer.name} and back`, async (t) => {
    const here = new RotorClient({ connect: carrier.connect });
    const there = new RotorClient({ connect: peer.connect });
    t.teardown(() => (here.close(), there.close()));
    await here.login(USER, PASSWORD);
    await here.request('GET', '/hello');
    await there.useToken(here.token);
    t.equal((await there.request('GET', '/hello')).status, 200, `the token works on ${peer.name}`);
    await here.useToken(there.token);
    t.equal((await here.request('GET', '/hello')).status, 200, `and back on ${carrier.name}`);
  });
}
