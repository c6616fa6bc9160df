/**
 * Two rotors driven directly (no sockets) for the hand-over tests: `a` hands its sessions over to
 * `b`, each on a store of its own (or one shared), one fake clock. `b` is never started: its pulls
 * are done by hand (`pull`), with `a`'s document as `GET /rotor/revocations` would answer it.
 */
import { resolveConfig, type DeepPartial, type RotorConfig } from '../../src/config/defaults.ts';
import { HandOver, HandOverKeys, newHandOverKey, parsePeers, spkiBase64, type HandOverKeyPair, type PeersFile } from '../../src/handover/index.ts';
import { silentLogger } from '../../src/log/index.ts';
import { hashPassword } from '../../src/server/auth.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { Store } from '../../src/store/types.ts';
import { FrameParser, getHeader, type Header, type ResponseFrame } from '../../src/wire/index.ts';

export const T0 = Date.UTC(2026, 10, 24, 12);

/** The application of the home server: GET /go hands over to the peer named by ?to (default b). */
export function homeApp(): RotorApp {
  return {
    routes: {
      'GET /hello': (req) => ({ body: `hello, ${req.user}` }),
      'GET /go': (req) => ({ body: 'go on', handOver: req.query === '' ? 'b' : req.query.replace(/^to=/, '') }),
      'GET /meta': (req) => ({ contentType: 'application/json', body: JSON.stringify(req.meta) }),
    },
    tasks: {},
  };
}

export interface Side {
  rotor: Rotor;
  store: Store;
  handOver: HandOver;
  send(verb: string, path: string, headers?: Header[], body?: string | Buffer): Promise<ResponseFrame & { bytes: Buffer }>;
}

export interface Pair {
  a: Side;
  b: Side;
  clock: { now: number };
  /** a's hand-over keys. */
  aKeys: HandOverKeyPair[];
  login(side?: Side): Promise<string>;
  /** A hand-over token to `to` from a fresh login at a (or from `token`'s session): the token, and a's next token. */
  handOverFrom(token?: string, to?: string): Promise<{ handOver: string; next: string; parent: string }>;
  /** b takes a's revocation list as it is now. */
  pull(): Promise<void>;
}

export function sender(rotor: Rotor): Side['send'] {
  return async (verb, path, headers = [], body) => {
    const reply = await rotor.dispatch({ kind: 'request', verb, path, headers, body: typeof body === 'string' ? Buffer.from(body) : body }, { carrier: 'http', peer: '127.0.0.1' });
    const { frames, error } = new FrameParser().push(reply.bytes);
    const frame = frames[0];
    if (error || frames.length !== 1 || frame.kind !== 'response') throw new Error('reply is not one response frame');
    return Object.assign(frame, { bytes: reply.bytes });
  };
}

export async function pair(options: { openStore?: () => Promise<Store>; shared?: boolean; config?: DeepPartial<RotorConfig>; aKeys?: HandOverKeyPair[]; bTrusts?: Record<string, string> } = {}): Promise<Pair> {
  // The address throttle off unless a test turns it on: these tests send hundreds of refused tokens on purpose (test/handover/throttle.test.ts has it on).
  const config = resolveConfig({ ...options.config, auth: { scryptN: 1024, addressFailureFactor: 0, ...options.config?.auth } });
  const clock = { now: T0 };
  const aKeys = options.aKeys ?? [newHandOverKey(T0, 'ha1')];
  const open = options.openStore ?? (async () => new MemoryStore());
  const aStore = await open();
  const bStore = options.shared ? aStore : await open();
  for (const store of new Set([aStore, bStore])) await store.putUser({ name: 'alice', passwordHash: await hashPassword('pw', config.auth, seededRandom(1)), createdAt: 0 });
  const peersOfA: PeersFile = { self: 'a', peers: [{ name: 'b', address: 'tcp://127.0.0.1:4001' }, { name: 'c', address: 'tcp://127.0.0.1:4002' }] };
  const trusted = options.bTrusts ?? Object.fromEntries(aKeys.map((key) => [key.id, spkiBase64(key.publicKey)]));
  const peersOfB: PeersFile = { self: 'b', peers: [{ name: 'a', address: 'tcp://127.0.0.1:4000', publicKeys: trusted, revocations: 'http://127.0.0.1:1/rotor/revocations' }] };
  const side = (store: Store, peers: PeersFile, keys: HandOverKeyPair[], seed: number): Side => {
    const handOver = new HandOver({ peers: parsePeers(peers), keys: new HandOverKeys(keys) });
    const rotor = new Rotor({ config, store, app: homeApp(), keys: KeyRing.generate(seededRandom(seed)), log: silentLogger(), now: () => clock.now, random: seededRandom(seed + 1), handOver });
    return { rotor, store, handOver, send: sender(rotor) };
  };
  const a = side(aStore, peersOfA, aKeys, 10);
  const b = side(bStore, peersOfB, [newHandOverKey(T0, 'hb1')], 20);
  const login = async (at: Side = a) => {
    const reply = await at.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']]);
    const token = getHeader(reply, 'Token');
    if (!token) throw new Error(`login failed: ${getHeader(reply, 'Error')}`);
    return token;
  };
  const handOverFrom: Pair['handOverFrom'] = async (token, to) => {
    const reply = await a.send('GET', to ? `/go?to=${to}` : '/go', [['Token', token ?? (await login())]]);
    const handOver = getHeader(reply, 'Hand-over');
    const next = getHeader(reply, 'Token');
    if (!handOver || !next) throw new Error(`no hand-over: ${reply.status} ${getHeader(reply, 'Error')}`);
    return { handOver, next, parent: Buffer.from(next.split('.')[1], 'base64url').subarray(2, 18).toString('base64url') };
  };
  const pull = async () => {
    const { body, signature } = await a.handOver.document(clock.now);
    await b.handOver.take(b.handOver.peers.byName.get('a')!, { body, signature });
  };
  return { a, b, clock, aKeys, login, handOverFrom, pull };
}

/** POST /rotor/login at `side` with a hand-over token. */
export function handOverLogin(side: Side, token: string, home = 'a', body?: string, extra: Header[] = []): Promise<ResponseFrame & { bytes: Buffer }> {
  return side.send('POST', '/rotor/login', [['Hand-over', token], ['Home', home], ...extra], body);
}

export const errorOf = (reply: ResponseFrame): string | undefined => getHeader(reply, 'Error');
