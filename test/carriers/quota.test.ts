/**
 * Quotas on every carrier (spec §10): the same exchanges cost the same frame bytes over TCP,
 * HTTP and WebSocket — HTTP's and WebSocket's own framing is not counted — and a cap ends the
 * session with its code on each.
 */
import t from 'tap';
import { RotorClient } from '../../src/client/index.ts';
import { issueLot, templateRecord } from '../../src/quotas/templates.ts';
import { seededRandom } from '../../src/session/random.ts';
import { carriers, startServer } from './helpers.ts';

t.test('one sequence of exchanges, counted alike on every carrier; the cap refuses on each', async (t) => {
  const server = await startServer();
  t.teardown(() => server.close());
  const template = templateRecord('pass', { maxBytesTotal: 40_000 }, Date.now());
  await server.store.commitRecord('template', 'pass', template, 0);
  const { codes } = await issueLot(server.store, seededRandom(7), { id: 'lot', template, count: 3, comment: '', issuer: 'test', owner: '', now: Date.now() });
  const sizes = Array.from({ length: 12 }, (_, i) => (i * 977) % 3000);
  const spent: Record<string, unknown>[] = [];
  for (const [i, carrier] of carriers(server).filter((c) => ['TCP', 'HTTP', 'WS'].includes(c.name)).entries()) {
    const client = new RotorClient({ connect: carrier.connect });
    await client.loginWithCode(codes[i]);
    for (const size of sizes) await client.request('POST', '/reverse', { body: Buffer.alloc(size, 0x61) });
    spent.push((await client.quota()).used as Record<string, unknown>);
    let refusal: string | undefined;
    for (let n = 0; n < 100 && refusal === undefined; n++) {
      try {
        await client.request('POST', '/reverse', { body: Buffer.alloc(2000, 0x62) });
      } catch (err) {
        refusal = (err as { code?: string }).code;
      }
    }
    t.equal(refusal, 'ROTOR_E_QUOTA_BYTES_TOTAL', `${carrier.name}: the cap ends the session with its code`);
    client.close();
  }
  t.equal(spent.length, 3, 'three carriers');
  t.ok((spent[0].bytesIn as number) > sizes.reduce((a, b) => a + b, 0), 'the bodies and the frames around them are counted');
  t.same(spent[1], spent[0], 'HTTP counts what TCP counts');
  t.same(spent[2], spent[0], 'WebSocket counts what TCP counts');
});
