/**
 * Sealed sessions in the client library (spec §12), against a real server on every carrier:
 * open with an app identity, read, defer work and fetch its result, log out; a lost reply is
 * recovered with the identical request and reply; and a frame copied off the wire, sent again
 * after the client moved on, is refused (ROTOR_E_SEAL_REPLAYED) while the client goes on.
 */
import t from 'tap';
import { RotorClient, RotorClientError, TransportError, type AppIdentity, type ClientTransport, type Connect } from '../../src/client/index.ts';
import { addApp } from '../../src/seal/apps.ts';
import { x25519Pair } from '../../src/seal/proof.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { getHeader, serializeFrame, type RequestFrame, type ResponseFrame } from '../../src/wire/index.ts';
import { carriers, startServer, testApp, type Carrier } from '../carriers/helpers.ts';

/** The test app, counting what its POST /reverse handler was given. */
const handled: string[] = [];
const base = testApp();
const reverse = base.routes['POST /reverse'];
const server = await startServer({
  app: { ...base, routes: { ...base.routes, 'POST /reverse': (request) => (handled.push(request.body?.toString() ?? ''), reverse(request)) } },
});
t.teardown(() => server.close());
const app = await addApp(server.store, 'billing', 'open', Date.now(), pooledRandom());

interface Exchanged {
  request: RequestFrame;
  response: ResponseFrame;
  lost: boolean;
}

/**
 * The client's wire: every request it sent and the reply the server gave, in order. `lose(match)`
 * loses the reply to the next request `match` picks: the server answered it, then the connection
 * is cut before the client reads the answer.
 */
function wiretap(connect: Connect): { connect: Connect; sent: Exchanged[]; lose(match: (frame: RequestFrame) => boolean): void } {
  const sent: Exchanged[] = [];
  let losing: ((frame: RequestFrame) => boolean) | undefined;
  return {
    sent,
    lose: (match) => (losing = match),
    connect: async () => {
      const inner = await connect();
      const transport: ClientTransport = {
        async request(frame) {
          const response = await inner.request(frame);
          const lost = losing?.(frame) === true;
          sent.push({ request: frame, response, lost });
          if (lost) {
            losing = undefined;
            inner.close();
            throw new TransportError('reply lost (test)');
          }
          return response;
        },
        close: () => inner.close(),
      };
      return transport;
    },
  };
}

const identity = (carrier: Carrier): AppIdentity => ({ app: app.id, instance: `${carrier.name.toLowerCase()}-1.example`, key: app.key });
const line = (frame: RequestFrame) => `${frame.verb} ${frame.path}`;
const bytes = (frame: RequestFrame | ResponseFrame) => serializeFrame(frame).toString('latin1');
const is = (verb: string, path: string) => (frame: RequestFrame) => frame.verb === verb && frame.path === path;

/** Send `frame` on a connection of its own (not the client's), as someone who copied it would. */
async function sendRaw(carrier: Carrier, frame: RequestFrame): Promise<ResponseFrame> {
  const transport = await carrier.connect();
  try {
    return await transport.request(frame);
  } finally {
    transport.close();
  }
}

for (const carrier of carriers(server)) {
  t.test(`${carrier.name}: open sealed, read, defer, fetch the result, log out`, async (t) => {
    const wire = wiretap(carrier.connect);
    const client = new RotorClient({ connect: wire.connect });
    t.teardown(() => client.close());
    const me = identity(carrier);

    const opened = await client.openSealed(me, { meta: { carrier: carrier.name } });
    t.equal(opened.status, 200, 'the open: 200');
    t.ok(client.sealed && client.token, 'the client holds a sealed session');
    t.same(wire.sent.map((x) => line(x.request)), ['GET /rotor/seal', 'POST /rotor/seal', 'POST /rotor/ack'], 'a nonce, the open, the confirmation at once');
    const [nonce, open, ack] = wire.sent;
    t.equal(getHeader(open.request, 'Seal-Nonce'), getHeader(nonce.response, 'Seal-Nonce'), 'the open is for the nonce the server gave');
    t.equal(open.request.body?.toString(), JSON.stringify({ carrier: carrier.name }), 'with the metadata as its body');
    t.equal(ack.response.status, 200, 'the confirmation: 200');
    t.match(getHeader(ack.request, 'Seal-Proof'), `${getHeader(open.response, 'Seal-Nonce')}.`, "the confirmation's proof is over the open reply's Seal-Nonce");

    t.equal((await client.request('GET', '/hello')).body.toString(), `hello, app:${app.id}/${me.instance}`, 'a read: the session is the instance');
    t.same(JSON.parse((await client.request('GET', '/meta?view=all')).body.toString()), { carrier: carrier.name }, 'a read with a query');
    const merged = await client.exchangeMeta({ step: 2 });
    t.same(JSON.parse(merged.body.toString()), { carrier: carrier.name, step: 2 }, 'PUT /rotor/token with a body');

    const deferred = await client.request('POST', '/reverse', { body: 'sealed' });
    t.equal(deferred.status, 202, 'deferred work: 202');
    t.equal(deferred.tasks.length, 1, 'with a task id');
    const result = await client.waitForTask(deferred.tasks[0]);
    t.equal(result.status, 200, 'the task finished');
    t.equal(result.body.toString(), 'delaes', 'its result');

    await client.logout();
    t.equal(client.token, undefined, 'logged out: no token');
    t.notOk(client.sealed, 'and no seal');

    // Every request under a token proved itself, over the nonce that came with that token.
    let holding: string | undefined;
    const underToken = wire.sent.filter((x) => getHeader(x.request, 'Token') !== undefined);
    t.ok(underToken.length >= 7, 'the ack, three reads or rotations, the work, the task, the logout');
    for (const [i, x] of wire.sent.entries()) {
      if (i > 1) {
        const proof = getHeader(x.request, 'Seal-Proof');
        t.ok(proof?.startsWith(`${holding}.`), `${line(x.request)}: a Seal-Proof over the newest Seal-Nonce`);
        t.notOk(getHeader(x.response, 'Error'), `${line(x.request)}: accepted`);
      }
      const token = getHeader(x.response, 'Token');
      const next = getHeader(x.response, 'Seal-Nonce');
      if (token !== undefined) {
        t.ok(next, `${line(x.request)}: a new Token comes with its Seal-Nonce`);
        t.not(next, holding, 'a new nonce');
        holding = next;
      } else if (i > 0) t.equal(next, undefined, `${line(x.request)}: no Token, no Seal-Nonce: the client keeps both`);
    }
  });

  t.test(`${carrier.name}: a lost reply is recovered by the identical request, with the identical reply`, async (t) => {
    const wire = wiretap(carrier.connect);
    const client = new RotorClient({ connect: wire.connect, retryDelayMs: 5 });
    t.teardown(() => client.close());
    wire.lose(is('POST', '/rotor/seal'));
    await client.openSealed(identity(carrier));
    t.same(wire.sent.map((x) => line(x.request)), ['GET /rotor/seal', 'POST /rotor/seal', 'GET /rotor/seal', 'POST /rotor/seal', 'POST /rotor/ack'], 'a lost open reply: the open starts over');
    t.not(getHeader(wire.sent[3].request, 'Seal-Nonce'), getHeader(wire.sent[1].request, 'Seal-Nonce'), 'with a new nonce');

    wire.lose(is('GET', '/hello'));
    await client.request('GET', '/hello');
    const reads = wire.sent.filter((x) => is('GET', '/hello')(x.request));
    t.equal(bytes(reads[1].request), bytes(reads[0].request), 'a lost read: sent again byte for byte');
    t.equal(bytes(reads[1].response), bytes(reads[0].response), 'the identical reply');

    handled.length = 0;

    wire.lose(is('POST', '/reverse'));
    const deferred = await client.request('POST', '/reverse', { body: 'lost and found' });
    const tries = wire.sent.filter((x) => is('POST', '/reverse')(x.request));
    t.same(tries.map((x) => x.lost), [true, false], 'the first reply was lost, the retry answered');
    t.equal(bytes(tries[1].request), bytes(tries[0].request), 'the retry is the same request, byte for byte: same token, same proof');
    t.equal(bytes(tries[1].response), bytes(tries[0].response), 'and gets the identical reply: the same task, the same next token and nonce');
    t.equal(deferred.status, 202);
    t.equal(client.token, getHeader(tries[0].response, 'Token'), 'the client holds the token of the lost reply');

    const result = await client.waitForTask(deferred.tasks[0]);
    t.equal(result.body.toString(), 'dnuof dna tsol', 'the session goes on: the work ran, its result is there');
    t.same(handled, ['lost and found'], 'the handler ran once for the two sends');
    t.equal((await client.request('GET', '/hello')).status, 200, 'and reads go on');
    await client.logout();
  });

  t.test(`${carrier.name}: a request whose reply never came is the next one sent, as it was`, async (t) => {
    const wire = wiretap(carrier.connect);
    const client = new RotorClient({ connect: wire.connect, retries: 0 });
    t.teardown(() => client.close());
    await client.openSealed(identity(carrier));

    wire.lose(is('GET', '/hello'));
    await t.rejects(client.request('GET', '/hello'), TransportError, 'no retries: the lost reply fails the call');
    const lost = wire.sent[wire.sent.length - 1];
    const recovered = await client.recover();
    t.equal(recovered?.status, 200, 'recover() sends it again and resolves with its reply');
    t.equal(bytes(wire.sent[wire.sent.length - 1].request), bytes(lost.request), 'the same request, byte for byte');
    t.equal(bytes(wire.sent[wire.sent.length - 1].response), bytes(lost.response), 'the identical reply');
    t.equal(await client.recover(), undefined, 'then nothing is owed');

    wire.lose(is('POST', '/reverse'));
    await t.rejects(client.request('POST', '/reverse', { body: 'once' }), TransportError);
    const owed = wire.sent[wire.sent.length - 1];
    const meta = await client.request('GET', '/meta');
    t.equal(meta.status, 200, 'the next call is answered');
    const [again, next] = wire.sent.slice(-2);
    t.equal(bytes(again.request), bytes(owed.request), 'but first the unanswered request went again, as it was');
    t.equal(bytes(again.response), bytes(owed.response), 'and got its reply');
    t.equal(getHeader(next.request, 'Token'), getHeader(owed.response, 'Token'), 'the next request went under the token that reply brought');
    t.equal(wire.sent.filter((x) => getHeader(x.request, 'Token') === getHeader(owed.request, 'Token')).length, 2, 'no other request went under the token whose reply was lost');
    const task = getHeader(owed.response, 'Task')!;
    t.equal((await client.waitForTask(task)).body.toString(), 'ecno', "the work of the request whose reply was lost ran");
    await client.logout();
  });

  t.test(`${carrier.name}: a frame copied off the wire gets ROTOR_E_SEAL_REPLAYED; the client goes on`, async (t) => {
    const wire = wiretap(carrier.connect);
    const client = new RotorClient({ connect: wire.connect });
    t.teardown(() => client.close());
    await client.openSealed(identity(carrier));
    const confirmation = wire.sent[wire.sent.length - 1].request;
    await client.request('GET', '/hello');
    const read = wire.sent[wire.sent.length - 1];
    handled.length = 0;
    const work = await client.request('POST', '/reverse', { body: 'copied' });
    const write = wire.sent[wire.sent.length - 1];
    await client.request('GET', '/hello');
    const last = wire.sent[wire.sent.length - 1];

    for (const [what, frame] of [['a read', read.request], ['deferred work', write.request], ['the confirmation', confirmation]] as const) {
      const replayed = await sendRaw(carrier, frame);
      t.equal(replayed.status, 401, `${what} sent again after the client moved on: 401`);
      t.equal(getHeader(replayed, 'Error'), 'ROTOR_E_SEAL_REPLAYED', 'ROTOR_E_SEAL_REPLAYED');
      t.equal(getHeader(replayed, 'Token'), undefined, 'no token');
    }
    const replay = await sendRaw(carrier, last.request);
    t.equal(bytes(replay), bytes(last.response), 'the newest exchange sent again gets its replay, like a lost reply (§4)…');
    const stolen = getHeader(replay, 'Token')!;
    const withoutProof = await sendRaw(carrier, { kind: 'request', verb: 'GET', path: '/hello', headers: [['Token', stolen]], body: undefined });
    t.equal(getHeader(withoutProof, 'Error'), 'ROTOR_E_SEAL_PROOF_MISSING', '…but its token without a proof is refused');
    const oldProof = await sendRaw(carrier, { ...last.request, headers: [['Token', stolen], ['Seal-Proof', getHeader(last.request, 'Seal-Proof')!]] });
    t.equal(getHeader(oldProof, 'Error'), 'ROTOR_E_SEAL_NONCE_WRONG', 'and so is it with the proof copied from the last request');
    const otherBody = await sendRaw(carrier, { ...write.request, body: Buffer.from('changed') });
    t.equal(getHeader(otherBody, 'Error'), 'ROTOR_E_SEAL_BODY_CHANGED', 'a copy with another body');
    const otherPath = await sendRaw(carrier, { ...read.request, path: '/meta' });
    t.equal(getHeader(otherPath, 'Error'), 'ROTOR_E_SEAL_PROOF_WRONG', 'a copy to another path');

    t.equal((await client.request('GET', '/hello')).status, 200, 'the client goes on undisturbed');
    t.equal((await client.waitForTask(work.tasks[0])).body.toString(), 'deipoc', 'its work ran, its result is there');
    t.same(handled, ['copied'], 'once: the copy was not handled');
    await client.logout();
    t.equal(getHeader(await sendRaw(carrier, last.request), 'Error'), 'ROTOR_E_SESSION_REVOKED', 'after the logout, every copy is dead');
  });
}

t.test('an open refused, or a reply whose Seal-Key was changed on the way, leaves the client without a session', async (t) => {
  const [carrier] = carriers(server);
  const client = new RotorClient({ connect: carrier.connect });
  t.teardown(() => client.close());
  await t.rejects(client.openSealed({ ...identity(carrier), app: 'AAAAAAAAAAAAAAAA' }), { code: 'ROTOR_E_APP_UNKNOWN' }, 'an unknown app');
  await t.rejects(client.openSealed({ ...identity(carrier), key: pooledRandom()(32).toString('base64url') }), { code: 'ROTOR_E_SEAL_INVALID' }, 'another key');
  t.equal(client.token, undefined, 'no token');

  // Someone on the way puts their own X25519 key in the open reply: the instance's session key is
  // then not the server's, and the confirmation says so.
  const theirs = x25519Pair(pooledRandom()(32)).publicRaw.toString('base64url');
  const swapping: Connect = async () => {
    const inner = await carrier.connect();
    return {
      request: async (frame) => {
        const response = await inner.request(frame);
        if (frame.path !== '/rotor/seal' || frame.verb !== 'POST') return response;
        return { ...response, headers: response.headers.map(([name, value]) => [name, name === 'Seal-Key' ? theirs : value] as const) };
      },
      close: () => inner.close(),
    };
  };
  const fooled = new RotorClient({ connect: swapping });
  t.teardown(() => fooled.close());
  await t.rejects(fooled.openSealed(identity(carrier)), RotorClientError, 'the confirmation is refused');
  await t.rejects(fooled.openSealed(identity(carrier)), { code: 'ROTOR_E_SEAL_PROOF_WRONG' }, 'with ROTOR_E_SEAL_PROOF_WRONG');
  t.equal(fooled.token, undefined, 'and the client holds no session it cannot use');
  t.notOk(fooled.sealed);
});
