/** A Rotor driven directly (no sockets) for dispatcher tests: a fake clock, a memory store. */
import { resolveConfig, type DeepPartial, type RotorConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { hashPassword } from '../../src/server/auth.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { FrameParser, getHeader, type Header, type ResponseFrame } from '../../src/wire/index.ts';

export interface Harness {
  rotor: Rotor;
  store: MemoryStore;
  clock: { now: number };
  /** The rotor's key ring: a second node on the same store needs the same keys. */
  keys: KeyRing;
  send(verb: string, path: string, headers?: Header[], body?: string | Buffer): Promise<{ frame: ResponseFrame; bytes: Buffer; close: boolean }>;
  login(user?: string, password?: string): Promise<string>;
}

export async function harness(app: RotorApp, config: DeepPartial<RotorConfig> = {}): Promise<Harness> {
  const resolved = resolveConfig({ ...config, auth: { scryptN: 1024, ...config.auth } });
  const store = new MemoryStore();
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('pw', resolved.auth, seededRandom(1)), createdAt: 0 });
  const clock = { now: Date.UTC(2026, 10, 24) };
  const keys = KeyRing.generate(seededRandom(2));
  const rotor = new Rotor({ config: resolved, store, app, keys, log: silentLogger(), now: () => clock.now, random: seededRandom(3) });
  const send: Harness['send'] = async (verb, path, headers = [], body) => {
    const reply = await rotor.dispatch({ kind: 'request', verb, path, headers, body: typeof body === 'string' ? Buffer.from(body) : body });
    const { frames, error } = new FrameParser().push(reply.bytes);
    if (error || frames.length !== 1 || frames[0].kind !== 'response') throw new Error('reply is not one response frame');
    return { frame: frames[0], bytes: reply.bytes, close: reply.close };
  };
  const login = async (user = 'alice', password = 'pw') => {
    const { frame } = await send('POST', '/rotor/login', [['User', user], ['Password', password]]);
    const token = getHeader(frame, 'Token');
    if (!token) throw new Error(`login failed: ${getHeader(frame, 'Error')}`);
    return token;
  };
  return { rotor, store, clock, keys, send, login };
}
