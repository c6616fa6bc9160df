/**
 * A TOTP login sent again gets the same reply (spec §3) — also across a rotation of the signing
 * key: its session id is derived from the key, and the one it was opened under is looked for
 * too. (A hostile review found the same code opening a second session once the key changed.)
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { hashPassword, newTotpSecret, totpFor } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';

t.test('one TOTP code, one session, across a signing-key change', async (t) => {
  const config = resolveConfig({ auth: { scryptN: 1024 } });
  const store = new MemoryStore();
  const secret = newTotpSecret();
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('pw', config.auth, seededRandom(1)), createdAt: 0, totpSecret: secret });
  const now = Date.now();
  const k1 = { id: 'k1', secret: Buffer.alloc(32, 1) };
  const k2 = { id: 'k2', secret: Buffer.alloc(32, 2) };
  const keys = new KeyRing([k1]);
  const rotor = new Rotor({ config, store, app: exampleApp(), keys, log: silentLogger(), now: () => now, random: seededRandom(5) });
  const code = totpFor(secret, 'alice').generate({ timestamp: now });
  const login = async () => (await rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['User', 'alice'], ['Password', 'pw'], ['TOTP', code]], body: undefined })).bytes;
  const first = await login();
  t.match(first.toString('latin1'), /^ROTOR\/1 200/, 'the first login with the code');
  keys.replace([k2, k1], 'k2');
  const again = await login();
  t.same(again, first, 'sent again after the rotation: the identical reply, not a second session');
  const sessions: string[] = [];
  for await (const state of store.listSessions()) if (!state.revoked) sessions.push(state.id);
  t.equal(sessions.length, 1, 'one live session');
});
