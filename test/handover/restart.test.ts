/**
 * What a peer knows of an issuer's revocations outlives a restart, and a peer that cannot hear
 * from an issuer does not vouch for its children for ever (spec §11; a hostile review found both).
 *
 * - The list taken last is kept in the store as signed, and checked again at start against the
 *   peers file's keys: a restarted peer still refuses a hand-over of a parent that ended, and an
 *   older list (a replay) is refused after the restart too.
 * - No list taken for 15 minutes (LISTED_MS: a parent may have ended and dropped off the list
 *   unseen): the sessions that issuer's hand-overs opened are ended.
 */
import t from 'tap';
import { resolveConfig } from '../../src/config/defaults.ts';
import { HandOver, HandOverKeys, newHandOverKey, parsePeers, spkiBase64 } from '../../src/handover/index.ts';
import { silentLogger } from '../../src/log/index.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { getHeader } from '../../src/wire/index.ts';
import { errorOf, handOverLogin, homeApp, pair, sender, T0 } from './helpers.ts';

t.test('a restarted peer still refuses the hand-over of an ended parent, and an older list', async (t) => {
  const key = newHandOverKey(T0, 'ha1');
  const p = await pair({ aKeys: [key] });
  const stale = await p.a.handOver.document(p.clock.now);
  p.clock.now += 2000;
  const { handOver, next } = await p.handOverFrom();
  await p.a.send('POST', '/rotor/logout', [['Token', next]]);
  await p.pull();
  t.equal(errorOf(await handOverLogin(p.b, handOver)), 'ROTOR_E_HANDOVER_REVOKED', 'before the restart');

  // b restarts on the same store; a cannot be reached (no pull gets through).
  const config = resolveConfig({ auth: { scryptN: 1024 } });
  const peers = parsePeers({ self: 'b', peers: [{ name: 'a', address: 'tcp://127.0.0.1:4000', publicKeys: { ha1: spkiBase64(key.publicKey) }, revocations: 'http://127.0.0.1:1/rotor/revocations' }] });
  const restarted = new HandOver({ peers, keys: new HandOverKeys([newHandOverKey(T0, 'hb1')]), pullSeconds: 3600 });
  const rotor = new Rotor({ config, store: p.b.store, app: homeApp(), keys: KeyRing.generate(seededRandom(20)), log: silentLogger(), now: () => p.clock.now, random: seededRandom(99), handOver: restarted });
  rotor.start();
  t.teardown(() => rotor.stop());
  await restarted.whenRestored();
  const again = await sender(rotor)('POST', '/rotor/login', [['Hand-over', handOver], ['Home', 'a']]);
  t.equal(errorOf(again), 'ROTOR_E_HANDOVER_REVOKED', 'after the restart: the list taken before it is in force');
  await t.rejects(restarted.take(peers.byName.get('a')!, stale), /older/, 'an older list replayed after the restart is refused');
});

t.test('no list from an issuer for 15 minutes: the sessions its hand-overs opened end', async (t) => {
  const p = await pair();
  await p.pull();
  const { handOver, next } = await p.handOverFrom();
  const child = getHeader(await handOverLogin(p.b, handOver), 'Token')!;
  t.ok(child, 'a session at b from a hand-over');
  await p.a.send('POST', '/rotor/logout', [['Token', next]]);
  p.clock.now += 10 * 60_000;
  await p.b.handOver.sweep(p.clock.now);
  t.equal((await p.b.send('GET', '/hello', [['Token', child]])).status, 200, 'ten minutes without a list: b still vouches for it');
  const later = getHeader(await p.b.send('GET', '/hello', [['Token', child]]), 'Token') ?? child;
  p.clock.now += 5 * 60_000 + 1000;
  await p.b.handOver.sweep(p.clock.now);
  t.equal(errorOf(await p.b.send('GET', '/hello', [['Token', later]])), 'ROTOR_E_SESSION_REVOKED', 'fifteen: its parent may have ended unseen, so it ends');
});
