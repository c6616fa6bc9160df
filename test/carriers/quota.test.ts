/**
 * Quotas on every carrier (spec §10), as a property: random sequences of exchanges of random
 * sizes, the same sequence over TCP, HTTP and WebSocket, cost the same frame bytes on each —
 * HTTP's and WebSocket's own framing is not counted — and the cap ends the session with its
 * code on each. (That the counters are exactly the frames' bytes is shown on TCP, where the
 * client sees the frames: test/quotas/dispatch.test.ts, test/quotas/redis-two-nodes.test.ts.)
 */
import t from 'tap';
import fc from 'fast-check';
import { RotorClient } from '../../src/client/index.ts';
import { issueLot, templateRecord } from '../../src/quotas/templates.ts';
import { seededRandom } from '../../src/session/random.ts';
import { fcRuns } from '../helpers/session.ts';
import { carriers, startServer } from './helpers.ts';

const CAP = 40_000;

t.test('random exchanges cost alike on every carrier; the cap refuses on each', async (t) => {
  const server = await startServer();
  t.teardown(() => server.close());
  const template = templateRecord('pass', { maxBytesTotal: CAP }, Date.now());
  await server.store.commitRecord('template', 'pass', template, 0);
  const { codes } = await issueLot(server.store, seededRandom(7), { id: 'lot', template, count: 300, comment: '', issuer: 'test', owner: '', now: Date.now() });
  const ways = carriers(server).filter((c) => ['TCP', 'HTTP', 'WS'].includes(c.name));
  t.equal(ways.length, 3, 'TCP, HTTP and WebSocket');
  let next = 0;
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.record({ path: fc.constantFrom('/reverse', '/echo', '/hello'), size: fc.integer({ min: 0, max: 3_000 }) }), { minLength: 1, maxLength: 10 }), async (exchanges) => {
      runs++;
      const spent: unknown[] = [];
      for (const way of ways) {
        const client = new RotorClient({ connect: way.connect });
        try {
          await client.loginWithCode(codes[next++]);
          for (const { path, size } of exchanges) {
            await client.request(path === '/hello' ? 'GET' : 'POST', path, path === '/hello' ? {} : { body: Buffer.alloc(size, 0x61), contentType: 'application/octet-stream' });
          }
          spent.push((await client.quota()).used);
        } finally {
          client.close();
        }
      }
      return JSON.stringify(spent[1]) === JSON.stringify(spent[0]) && JSON.stringify(spent[2]) === JSON.stringify(spent[0]);
    }),
    fcRuns(8, 20),
  );
  t.ok(runs >= 8, `${runs} random sequences, each over the three carriers, counted alike`);

  for (const way of ways) {
    const client = new RotorClient({ connect: way.connect });
    await client.loginWithCode(codes[next++]);
    let refusal: string | undefined;
    for (let n = 0; n < 100 && refusal === undefined; n++) {
      try {
        await client.request('POST', '/reverse', { body: Buffer.alloc(2000, 0x62) });
      } catch (err) {
        refusal = (err as { code?: string }).code;
      }
    }
    client.close();
    t.equal(refusal, 'ROTOR_E_QUOTA_BYTES_TOTAL', `${way.name}: the cap ends the session with its code`);
  }
});
