/**
 * A sealed session under lost replies, retries, reordering, restarts — and an attacker who sees
 * every frame either way but not the key (spec §12), model-based: fast-check draws a run of
 * actions; a simple model says what the application may have done (only the client's requests,
 * each at most once) and what the client is owed (every request answered, in order, never
 * locked out). The server is a real Rotor on one memory store; a restart is a new Rotor on it.
 */
import t from 'tap';
import fc from 'fast-check';
import { resolveConfig } from '../../src/config/defaults.ts';
import { RotorError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log/index.ts';
import { Rotor } from '../../src/server/rotor.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { SessionState } from '../../src/session/types.ts';
import { addApp } from '../../src/seal/apps.ts';
import { startOpen } from '../../src/seal/instance.ts';
import { sealProof } from '../../src/seal/proof.ts';
import { FrameParser, getHeader, serializeFrame, type Header, type RequestFrame, type ResponseFrame } from '../../src/wire/index.ts';

const SEAL_REFUSALS = new Set(['ROTOR_E_SEAL_PROOF_MISSING', 'ROTOR_E_SEAL_PROOF_WRONG', 'ROTOR_E_SEAL_NONCE_WRONG', 'ROTOR_E_SEAL_BODY_CHANGED', 'ROTOR_E_SEAL_REPLAYED']);

/** One step of a run. `pick` chooses among the frames captured so far. */
type Action =
  | { kind: 'send'; fate: 'answered' | 'reply-lost' | 'dropped' }
  | { kind: 'ack'; fate: 'answered' | 'reply-lost' | 'dropped' }
  | { kind: 'replay'; pick: number }
  | { kind: 'race'; pick: number }
  | { kind: 'forge'; how: 'strip' | 'body' | 'path' | 'newest-token' | 'random-mac'; pick: number }
  | { kind: 'restart' }
  /** The store fails the next commit (a blip): a request refused so stays owed (spec §12). */
  | { kind: 'blip' };

const fate = fc.constantFrom<'answered' | 'reply-lost' | 'dropped'>('answered', 'answered', 'reply-lost', 'dropped');
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('send' as const), fate }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('ack' as const), fate }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('replay' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('race' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('forge' as const), how: fc.constantFrom('strip', 'body', 'path', 'newest-token', 'random-mac'), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('blip' as const) }) },
);

const parse = (bytes: Buffer): ResponseFrame => {
  const { frames } = new FrameParser().push(bytes);
  return frames[0] as ResponseFrame;
};
const parseRequest = (bytes: Buffer): RequestFrame => {
  const { frames, error } = new FrameParser().push(bytes);
  if (error || frames.length !== 1) throw new Error('not one frame');
  return frames[0] as RequestFrame;
};
const withHeader = (frame: RequestFrame, name: string, value: string | undefined): RequestFrame => {
  const headers: Header[] = frame.headers.filter(([n]) => n !== name);
  if (value !== undefined) headers.push([name, value]);
  return { ...frame, headers };
};

async function sessions(store: MemoryStore): Promise<SessionState[]> {
  const out: SessionState[] = [];
  for await (const session of store.listSessions()) out.push(session);
  return out;
}

async function world() {
  const config = resolveConfig({ auth: { scryptN: 1024 } });
  const store = new MemoryStore();
  const keys = KeyRing.generate(seededRandom(11));
  /** Every request id the application ran, in order. */
  const ran: string[] = [];
  const app: RotorApp = {
    routes: {
      'POST /op': (request) => {
        ran.push(request.body!.toString());
        return { body: `did ${request.body!.toString()}` };
      },
      'GET /op': (request) => {
        ran.push(request.query);
        return { body: `did ${request.query}` };
      },
    },
    tasks: {},
  };
  const clock = { now: Date.UTC(2026, 11, 2) };
  let seed = 100;
  const boot = () => new Rotor({ config, store, app, keys, log: silentLogger(), now: () => clock.now, random: seededRandom(seed++) });
  let rotor = boot();
  const send = async (frame: RequestFrame): Promise<Buffer> => (await rotor.dispatch(frame)).bytes;
  const registered = await addApp(store, 'model', 'open', clock.now, seededRandom(12));
  const pending = startOpen({ app: registered.id, instance: 'host-a', key: registered.key }, getHeader(parse(await send({ kind: 'request', verb: 'GET', path: '/rotor/seal', headers: [], body: undefined })), 'Seal-Nonce')!);
  const opened = parse(await send({ kind: 'request', verb: 'POST', path: '/rotor/seal', headers: pending.headers, body: undefined }));
  const key = pending.sessionKey(getHeader(opened, 'Seal-Key')!)!;
  const commit = store.commitSession.bind(store);
  let failing = 0;
  store.commitSession = async (...args) => {
    if (failing > 0) {
      failing--;
      throw new RotorError('ROTOR_E_UNAVAILABLE', 'store blip (test)');
    }
    return commit(...args);
  };
  return {
    store,
    ran,
    key,
    opened,
    send,
    restart: () => {
      rotor = boot();
    },
    blip: () => {
      failing = 1;
    },
    heal: () => {
      failing = 0;
    },
  };
}

t.test('someone who sees every frame but not the key gets nothing done, and the instance is never locked out', async (t) => {
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 40 }), fc.integer({ min: 3, max: 8 }), async (actions, wanted) => {
      runs++;
      const w = await world();
      /** The client: its newest token and nonce, its requests, and the frame of the one in flight. */
      let token = getHeader(w.opened, 'Token')!;
      let nonce = getHeader(w.opened, 'Seal-Nonce')!;
      const intended = Array.from({ length: wanted }, (_, i) => `r${i}`);
      let next = 0;
      let inFlight: Buffer | undefined;
      const answers: string[] = [];
      /** Every frame the attacker saw the client send, and every reply bytes the server sent. */
      const captured: Buffer[] = [];
      const replies = new Set<string>();
      const build = (verb: string, path: string, body?: string): Buffer => {
        const bodyBytes = body === undefined ? undefined : Buffer.from(body);
        return serializeFrame({ kind: 'request', verb, path, headers: [['Token', token], ['Seal-Proof', sealProof(w.key, nonce, verb, path, bodyBytes)]], body: bodyBytes });
      };
      const requestFor = (id: string): Buffer => (Number(id.slice(1)) % 2 === 0 ? build('POST', '/op', id) : build('GET', `/op?${id}`));
      /** Per request id, the next tokens of the replies that answered it: more than one, it was processed twice. */
      const answeredWith = new Map<string, Set<string>>();
      const blips = actions.some((step) => step.kind === 'blip');
      const deliver = async (frame: Buffer): Promise<Buffer> => {
        const reply = await w.send(parseRequest(frame));
        replies.add(reply.toString('latin1'));
        const answered = parse(reply);
        const next = getHeader(answered, 'Token');
        const id = answered.body?.toString().replace(/^did /, '');
        if (next !== undefined && id !== undefined && answered.body?.toString().startsWith('did ')) {
          const tokens = answeredWith.get(id) ?? new Set<string>();
          answeredWith.set(id, tokens.add(next));
          if (tokens.size > 1) throw new Error(`${id} was processed twice: two replies with different tokens`);
        }
        return reply;
      };
      /** The client reads a reply to its request in flight; refused for now, it stays owed. */
      const take = (reply: Buffer) => {
        const frame = parse(reply);
        const error = getHeader(frame, 'Error');
        if (error === 'ROTOR_E_UNAVAILABLE') return;
        if (error !== undefined) throw new Error(`the instance's own request was refused: ${error}`);
        const nextToken = getHeader(frame, 'Token');
        if (nextToken === undefined) throw new Error('a reply to a request came without a token');
        t.equal(frame.body?.toString(), `did ${intended[next]}`, 'the reply is to the request the instance sent');
        answers.push(intended[next]);
        token = nextToken;
        nonce = getHeader(frame, 'Seal-Nonce')!;
        next++;
        inFlight = undefined;
      };
      const pickCaptured = (pick: number) => captured[pick % captured.length];
      /** What the model allows of any frame not the instance's own: nothing run that the instance did not send, nothing twice, no end. */
      const checkWorld = async (where: string) => {
        const sent = new Set(captured.map((frame) => parseRequest(frame)).map((frame) => (frame.verb === 'POST' ? frame.body?.toString() : frame.path.split('?')[1])).filter((id) => id !== undefined));
        for (const id of w.ran) if (!sent.has(id)) throw new Error(`${where}: the application ran ${id}, which the instance never sent`);
        // A handler whose exchange then failed to commit (a store blip) runs again when its request
        // is sent again — its own effects are not once-only, deferred work is (spec §3). Without
        // blips, a handler runs once per request.
        if (!blips && new Set(w.ran).size !== w.ran.length) throw new Error(`${where}: a request ran twice: ${w.ran.join(',')}`);
        const [session] = await sessions(w.store);
        if (session?.revoked) throw new Error(`${where}: the session was ended (${session.revoked.reason})`);
      };
      const attackerSends = async (frame: Buffer, where: string, forged: boolean) => {
        const before = w.ran.length;
        const reply = parse(await deliver(frame));
        const error = getHeader(reply, 'Error');
        if (forged) {
          if (error === undefined || !SEAL_REFUSALS.has(error)) throw new Error(`${where}: a forged frame got ${error ?? 'through'}`);
          if (w.ran.length !== before) throw new Error(`${where}: a forged frame ran`);
        } else if (error !== undefined && error !== 'ROTOR_E_SEAL_REPLAYED' && error !== 'ROTOR_E_UNAVAILABLE') {
          throw new Error(`${where}: a captured frame got ${error}`);
        }
      };

      for (const [i, step] of actions.entries()) {
        const where = `step ${i} ${JSON.stringify(step)}`;
        switch (step.kind) {
          case 'send': {
            if (next >= intended.length) break;
            // One request per token: a retry is the same bytes.
            inFlight ??= requestFor(intended[next]);
            captured.push(inFlight);
            if (step.fate === 'dropped') break;
            const reply = await deliver(inFlight);
            if (step.fate === 'answered') take(reply);
            break;
          }
          case 'ack': {
            // An ack under the newest token, beside (never instead of) the request in flight.
            const ack = build('POST', '/rotor/ack');
            captured.push(ack);
            if (step.fate === 'dropped') break;
            const reply = parse(await deliver(ack));
            // An ack refused for now may be dropped: a spent ack never looks like a clone's request.
            const refusal = getHeader(reply, 'Error');
            if (step.fate === 'answered' && refusal !== undefined && refusal !== 'ROTOR_E_UNAVAILABLE') throw new Error(`${where}: the instance's ack got ${refusal}`);
            break;
          }
          case 'replay':
            if (captured.length > 0) await attackerSends(pickCaptured(step.pick), where, false);
            break;
          case 'race': {
            // The instance's retry and a captured frame at once: reordered on the way.
            if (captured.length === 0 || inFlight === undefined) break;
            const theirs = pickCaptured(step.pick);
            const [mine] = await Promise.all([deliver(inFlight), attackerSends(theirs, where, false)]);
            take(mine);
            break;
          }
          case 'forge': {
            if (captured.length === 0) break;
            const base = parseRequest(pickCaptured(step.pick));
            let forged: RequestFrame;
            if (step.how === 'strip') forged = withHeader(base, 'Seal-Proof', undefined);
            else if (step.how === 'body') forged = { ...base, verb: 'POST', path: '/op', body: Buffer.from('evil') };
            else if (step.how === 'path') forged = { ...base, path: base.path === '/rotor/ack' ? '/rotor/logout' : `${base.path}x` };
            else if (step.how === 'newest-token') forged = withHeader(base, 'Token', token);
            else {
              const digest = getHeader(base, 'Seal-Proof')!.split('.')[1];
              forged = withHeader(withHeader(base, 'Token', token), 'Seal-Proof', `${nonce}.${digest}.${'A'.repeat(22)}`);
            }
            // A forged path or body under a proof over another one: refused like every forgery. (The
            // newest token put on the frame in flight makes that very frame again: a replay.)
            const same = (frame: RequestFrame) => [frame.verb, frame.path, getHeader(frame, 'Token'), getHeader(frame, 'Seal-Proof'), frame.body?.toString('latin1')].join('\n');
            await attackerSends(serializeFrame(forged), where, !captured.some((frame) => same(parseRequest(frame)) === same(forged)));
            break;
          }
          case 'restart':
            w.restart();
            break;
          case 'blip':
            w.blip();
            break;
        }
        await checkWorld(where);
      }
      // The network and the store heal: the instance finishes every request, in order, each run once.
      w.heal();
      while (next < intended.length) {
        inFlight ??= requestFor(intended[next]);
        captured.push(inFlight);
        take(await deliver(inFlight));
      }
      await checkWorld('at the end');
      t.same(answers, intended, 'every request answered, in order');
      const ran = blips ? [...new Set(w.ran)] : w.ran;
      if (ran.join(',') !== intended.join(',')) throw new Error(`the application ran ${w.ran.join(',')}, not ${intended.join(',')}`);
      const last = parse(await deliver(build('GET', '/op?final')));
      if (getHeader(last, 'Error') !== undefined) throw new Error(`the instance was locked out at the end: ${getHeader(last, 'Error')}`);
    }),
    { numRuns: 150 },
  );
  t.equal(runs, 150, '150 random runs');
});

t.test('a second holder of the session key making its own request under a spent token ends the session', async (t) => {
  const w = await world();
  const token1 = getHeader(w.opened, 'Token')!;
  const nonce1 = getHeader(w.opened, 'Seal-Nonce')!;
  const frame = (token: string, nonce: string, id: string) => ({ kind: 'request' as const, verb: 'POST', path: '/op', headers: [['Token', token], ['Seal-Proof', sealProof(w.key, nonce, 'POST', '/op', Buffer.from(id))]] as Header[], body: Buffer.from(id) });
  const first = parse(await w.send(frame(token1, nonce1, 'a')));
  const token2 = getHeader(first, 'Token')!;
  // The instance uses its new token (acking it): token1 is spent.
  parse(await w.send(frame(token2, getHeader(first, 'Seal-Nonce')!, 'b')));
  t.equal(getHeader(parse(await w.send(frame(token1, nonce1, 'a'))), 'Error'), 'ROTOR_E_SEAL_REPLAYED', 'the same request again: a replay, refused, nothing ends');
  t.equal(getHeader(parse(await w.send(frame(token1, nonce1, 'clone'))), 'Error'), 'ROTOR_E_TOKEN_REUSED', 'a new request under the spent token: a clone');
  const [session] = await sessions(w.store);
  t.equal(session?.revoked?.reason, 'reuse', 'the session is ended');
  t.same(w.ran, ['a', 'b'], "the clone's request never ran");
});
