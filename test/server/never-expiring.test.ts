import t from 'tap';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { exampleApp } from '../../src/app/example.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { getHeader } from '../../src/wire/index.ts';
import { harness } from './harness.ts';

t.test('tokens made never-expiring die when the operator stops allowing them, and their sessions are purged', async (t) => {
  const h = await harness(exampleApp(), { session: { tokenTtlMinutes: -1, allowNeverExpiring: true } });
  const idle = await h.login();
  const active = await h.login();
  const { frame } = await h.send('GET', '/hello', [['Token', active]]);
  const next = getHeader(frame, 'Token')!;
  t.equal(frame.status, 200, 'allowed while the setting is on');

  // The same store and keys, restarted with the setting off (and a finite lifetime for new tokens).
  const config = resolveConfig({ auth: { scryptN: 1024 } });
  const now = () => h.clock.now;
  const strict = new Rotor({ config, store: h.store, app: exampleApp(), keys: h.keys, log: silentLogger(), now, random: seededRandom(5) });
  for (const token of [idle, next]) {
    const reply = await strict.dispatch({ kind: 'request', verb: 'GET', path: '/hello', headers: [['Token', token]], body: undefined });
    t.match(reply.bytes.toString(), /^ROTOR\/1 401 [^\r]*\r\nError: ROTOR_E_TOKEN_EXPIRED\r\n/, 'refused before the store is asked');
  }
  t.equal(await strict.retireNeverExpiring(), 2, 'both sessions retired');
  t.equal(await strict.retireNeverExpiring(), 0, 'and only once');
  t.ok(await h.store.purgeExpired(h.clock.now + 1) >= 2, 'the purge forgets them');
  t.equal(await h.store.listSessions!()[Symbol.asyncIterator]().next().then((r) => r.done), true, 'nothing left');
});
