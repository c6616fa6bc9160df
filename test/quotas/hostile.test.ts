/**
 * What a hostile review of access codes found (spec §10), each now a test of the fix: logins
 * racing past the per-user allowance, a connection's spend lost when its fold failed and the
 * session was purged, replays fetched for free and past a deadline, and a code locked out for
 * good by a lost never-expiring token.
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { codeId, normalizeCode } from '../../src/quotas/codes.ts';
import type { OwnerRecord } from '../../src/quotas/login.ts';
import { issueLot, templateRecord, type TemplateOptions } from '../../src/quotas/templates.ts';
import type { CodeRecord } from '../../src/quotas/types.ts';
import { seededRandom } from '../../src/session/random.ts';
import type { DeepPartial, RotorConfig } from '../../src/config/defaults.ts';
import { getHeader } from '../../src/wire/index.ts';
import { harness, type Harness } from '../server/harness.ts';

const DAY = 24 * 3_600_000;

async function setup(options: TemplateOptions, config: DeepPartial<RotorConfig> = {}, app = exampleApp()) {
  const h = await harness(app, { session: { tokenTtlMinutes: 10 }, ...config });
  const template = templateRecord('pass', options, h.clock.now);
  await h.store.commitRecord('template', 'pass', template, 0);
  const { codes } = await issueLot(h.store, seededRandom(99), { id: 'lot', template, count: 1, comment: '', issuer: 'op', owner: '', now: h.clock.now });
  return { h, code: codes[0] };
}

const codeOf = async (h: Harness, code: string) => (await h.store.loadRecord<CodeRecord>('code', codeId(normalizeCode(code)!)))!.value;
const header = (reply: { frame: Parameters<typeof getHeader>[0] }, name: string) => getHeader(reply.frame, name);

/** Spend the session of `token` with 200-byte requests until a refusal; the refusal. */
async function spend(h: Harness, token: string) {
  for (let i = 0; i < 100; i++) {
    const reply = await h.send('POST', '/reverse', [['Token', token]], 'x'.repeat(200));
    const next = header(reply, 'Token');
    if (!next) return reply;
    token = next;
  }
  throw new Error('never refused');
}

t.test('metered password logins sent at once make no more codes than mintPerUser', async (t) => {
  const h = await harness(exampleApp(), { session: { tokenTtlMinutes: 10 }, quotas: { passwordTemplate: 'pass', mintPerUser: 1 } });
  await h.store.commitRecord('template', 'pass', templateRecord('pass', { maxBytesTotal: 2_000 }, h.clock.now), 0);
  // Store latency as on a network store: every read of the owner record takes 30 ms.
  const load = h.store.loadRecord.bind(h.store);
  h.store.loadRecord = (async (kind, id) => {
    const value = await load(kind, id);
    if (kind === 'owner') await new Promise((resolve) => setTimeout(resolve, 30));
    return value;
  }) as typeof h.store.loadRecord;
  const replies = await Promise.all(Array.from({ length: 4 }, () => h.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']])));
  const owner = (await h.store.loadRecord<OwnerRecord>('owner', 'alice'))!.value;
  t.same([owner.codes.length, owner.minted], [1, 1], 'one code was made');
  const tokens = new Set(replies.map((reply) => header(reply, 'Token')).filter(Boolean));
  t.equal(tokens.size, 1, 'one metered session (the others got its reply again, or were told it is in use)');
});

t.test('a fold that failed: the ended session is kept, and the code\'s next login folds it — days later too', async (t) => {
  const { h, code } = await setup({ maxBytesTotal: 2_000 });
  const token = header(await h.send('POST', '/rotor/login', [['Code', code]]), 'Token')!;
  const commit = h.store.commitRecord.bind(h.store);
  let failing = true;
  h.store.commitRecord = (async (kind, ...rest) => {
    if (kind === 'code' && failing) throw new Error('store hiccup');
    return commit(kind, ...rest);
  }) as typeof h.store.commitRecord;
  t.equal(header(await spend(h, token), 'Error'), 'ROTOR_E_QUOTA_BYTES_TOTAL');
  h.clock.now += DAY + 60_000;
  await h.store.purgeExpired(h.clock.now);
  const unfolded = (await codeOf(h, code)).session;
  t.ok(unfolded, 'the fold did not happen');
  const kept = (await h.store.loadSession(unfolded!))?.quota;
  t.ok(kept && kept.bytesIn > 0, 'and the purge kept the ended session, counters and all');
  const stillFailing = await h.send('POST', '/rotor/login', [['Code', code]]);
  t.equal(header(stillFailing, 'Error'), 'ROTOR_E_UNAVAILABLE', 'a login while the fold still fails waits for the store; it does not forget the spend');
  failing = false;
  const again = await h.send('POST', '/rotor/login', [['Code', code]]);
  t.same([header(again, 'Error'), header(again, 'Quota-Limit')], ['ROTOR_E_CODE_SPENT', 'bytes-total'], 'then the code is spent, as it was');
  const folded = await codeOf(h, code);
  t.same(folded.used, { bytesIn: kept!.bytesIn, bytesOut: kept!.bytesOut, usageMs: kept!.usageMs }, 'with what the connection spent');
  t.equal(folded.session, null);
});

t.test('replays are metered: counted, and refused past a limit', async (t) => {
  const app = { routes: { 'GET /big': () => ({ body: 'z'.repeat(4_000), contentType: 'text/plain' }) }, tasks: {} };
  const { h, code } = await setup({ maxBytesOut: 10_000, connectionMs: 5 * 60_000 }, {}, app);
  const first = header(await h.send('POST', '/rotor/login', [['Code', code]]), 'Token')!;
  const big = await h.send('GET', '/big', [['Token', first]]);
  t.ok(header(big, 'Token'));
  const again = await h.send('GET', '/big', [['Token', first]]);
  t.same(again.bytes, big.bytes, 'the lost reply comes back, byte for byte');
  const third = await h.send('GET', '/big', [['Token', first]]);
  t.same(third.bytes, big.bytes);
  const fourth = await h.send('GET', '/big', [['Token', first]]);
  t.same([header(fourth, 'Error'), header(fourth, 'Quota-Limit')], ['ROTOR_E_QUOTA_BYTES_OUT', 'bytes-out'], 'the replies sent again reached the cap: the next replay is refused');
  const { h: h2, code: code2 } = await setup({ maxBytesOut: 1_000_000, connectionMs: 5 * 60_000 }, {}, app);
  const token = header(await h2.send('POST', '/rotor/login', [['Code', code2]]), 'Token')!;
  await h2.send('GET', '/big', [['Token', token]]);
  h2.clock.now += 6 * 60_000;
  t.equal(header(await h2.send('GET', '/big', [['Token', token]]), 'Error'), 'ROTOR_E_QUOTA_CONNECTION_TIME', 'no replay past the connection time: the session ends');
});

t.test('a lost never-expiring token: the code is in use for an hour after its last exchange, then free again', async (t) => {
  const { h, code } = await setup({ maxBytesTotal: 100_000 }, { session: { tokenTtlMinutes: -1, allowNeverExpiring: true } });
  const first = header(await h.send('POST', '/rotor/login', [['Code', code]]), 'Token')!;
  t.ok(header(await h.send('GET', '/hello', [['Token', first]]), 'Token'), 'its first token used, then lost');
  const busy = await h.send('POST', '/rotor/login', [['Code', code]]);
  t.same([header(busy, 'Error'), header(busy, 'Wait-for')], ['ROTOR_E_CODE_IN_USE', '3600']);
  h.clock.now += 3_600_000;
  const next = await h.send('POST', '/rotor/login', [['Code', code]]);
  t.ok(header(next, 'Token'), 'an hour later the code opens a new connection');
  t.equal((await codeOf(h, code)).lastEnd?.reason, 'replaced');
});
