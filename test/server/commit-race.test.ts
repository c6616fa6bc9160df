/**
 * The compare-and-set loop of the dispatcher (load → admit → perform → commit): two rotor nodes
 * on one store racing on one token, and a store that never lets a commit through.
 */
import t from 'tap';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { FrameParser, getHeader, type Frame } from '../../src/wire/index.ts';

const config = resolveConfig({ auth: { scryptN: 1024 }, session: { maxCommitRetries: 4 } });
let handled = 0;
const app: RotorApp = { routes: { 'GET /count': () => ({ body: String(++handled) }) }, tasks: {} };
const request = (path: string, headers: Array<[string, string]>): Frame => ({ kind: 'request', verb: path === '/rotor/login' ? 'POST' : 'GET', path, headers, body: undefined });
const parse = (bytes: Buffer) => {
  const frame = new FrameParser().push(bytes).frames[0];
  if (frame?.kind !== 'response') throw new Error('not a response');
  return frame;
};

async function nodes(store: MemoryStore): Promise<[Rotor, Rotor]> {
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('pw', config.auth, seededRandom(1)), createdAt: 0 });
  const keys = KeyRing.generate(seededRandom(2));
  return [3, 4].map((seed) => new Rotor({ config, store, app, keys, log: silentLogger(), random: seededRandom(seed) })) as [Rotor, Rotor];
}

t.test('two nodes, one token at once: one exchange rotates, the other gets its replay', async (t) => {
  const store = readsLater(new MemoryStore());
  const [a, b] = await nodes(store);
  const token = getHeader(parse((await a.dispatch(request('/rotor/login', [['User', 'alice'], ['Password', 'pw']]))).bytes), 'Token')!;
  const before = (await store.loadSession((await first(store)).id))!;
  const [ra, rb] = await Promise.all([a.dispatch(request('/count', [['Token', token]])), b.dispatch(request('/count', [['Token', token]]))]);
  t.same(rb.bytes, ra.bytes, 'the identical reply, with the same next token, from both nodes');
  const after = (await store.loadSession(before.id))!;
  t.equal(after.gen, before.gen + 1, 'the session rotated once');
  t.equal(after.rev, before.rev + 1, 'one commit landed; the loser re-read the session and found its replay');
  t.equal(handled, 2, 'both ran the handler (a handler has no side effects: the loser’s result is thrown away)');
});

t.test('a session that changes under every attempt: ROTOR_E_CONFLICT after maxCommitRetries, nothing changed', async (t) => {
  const store = new MemoryStore();
  const [a] = await nodes(store);
  const token = getHeader(parse((await a.dispatch(request('/rotor/login', [['User', 'alice'], ['Password', 'pw']]))).bytes), 'Token')!;
  const before = await first(store);
  let commits = 0;
  store.commitSession = async () => {
    commits++;
    return false; // another node always got there first
  };
  const reply = parse((await a.dispatch(request('/count', [['Token', token]]))).bytes);
  t.equal(reply.status, 409);
  t.equal(getHeader(reply, 'Error'), 'ROTOR_E_CONFLICT');
  t.equal(getHeader(reply, 'Token'), undefined, 'no token: the client retries with the same one');
  t.equal(commits, config.session.maxCommitRetries, 'one commit attempt per retry allowed');
  t.same(await store.loadSession(before.id), before, 'the session is as it was');
});

/**
 * Like a networked store (Redis): every read takes a turn of the event loop, so two nodes can
 * both read before either writes. (The memory store also answers reads at once, and then the
 * first node's commit lands before the second reads: no race to lose.)
 */
function readsLater(store: MemoryStore): MemoryStore {
  Object.defineProperty(store, 'loadSessionNow', { value: undefined });
  return store;
}

async function first(store: MemoryStore) {
  for await (const state of store.listSessions()) return state;
  throw new Error('no session');
}
