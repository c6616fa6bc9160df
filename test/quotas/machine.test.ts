/**
 * The quota machine against a simple independent model (fast-check): random templates, random
 * exchanges of random sizes at random times. Counters equal the bytes of the processed frames;
 * bytes-in is never passed, bytes-out and bytes-total by at most the one reply that crossed
 * them; a request is refused exactly when some limit applies, and then by one that does.
 */
import t from 'tap';
import fc from 'fast-check';
import { charged, deriveQuota, endedAt, meterLimit, NO_USE, remaining } from '../../src/quotas/machine.ts';
import type { CodeRecord, QuotaLimit, TemplateRecord } from '../../src/quotas/types.ts';

const cap = (max: number) => fc.option(fc.integer({ min: 1, max }), { nil: null });
const templateArb = fc.record({
  maxBytesIn: cap(20_000),
  maxBytesOut: cap(20_000),
  maxBytesTotal: cap(30_000),
  connectionMs: cap(600_000),
  usageMs: cap(300_000),
  wallMs: cap(900_000),
  ageMs: cap(1_200_000),
});
const stepArb = fc.record({
  advanceMs: fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 0, max: 200_000 })),
  requestBytes: fc.integer({ min: 20, max: 3_000 }),
  replyBytes: fc.integer({ min: 20, max: 3_000 }),
});

function template(caps: Omit<TemplateRecord, 'name' | 'reusable' | 'nodes' | 'createdAt'>): TemplateRecord {
  return { name: 'p', reusable: true, nodes: [], createdAt: 0, ...caps };
}

function code(issuedAt: number): CodeRecord {
  return { id: 'c', lot: 'l', template: 'p', issuer: 'op', owner: '', issuedAt, status: 'unused', firstUsedAt: null, used: NO_USE, session: null, connections: 0, lastEnd: null };
}

t.test('metering agrees with the model', async (t) => {
  let refusals = 0;
  let steps = 0;
  fc.assert(
    fc.property(templateArb, fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 1_000, max: 120_000 }), fc.array(stepArb, { maxLength: 60 }), (caps, loginDelay, idleGapMs, exchanges) => {
      const tpl = template(caps);
      const issuedAt = 1_000_000;
      const start = issuedAt + loginDelay;
      let quota = deriveQuota(tpl, code(issuedAt), start, idleGapMs, null);
      // The model: plain sums and the deadlines as the template states them.
      let bytesIn = 0;
      let bytesOut = 0;
      let usage = 0;
      let last = start;
      let now = start;
      let lastReply = 0;
      const deadlines: [QuotaLimit, number | null][] = [
        ['connection-time', tpl.connectionMs === null ? null : start + tpl.connectionMs],
        ['wall-time', tpl.wallMs === null ? null : start + tpl.wallMs],
        ['age', tpl.ageMs === null ? null : issuedAt + tpl.ageMs],
      ];
      for (const step of exchanges) {
        now += step.advanceMs;
        usage += Math.min(now - last, idleGapMs);
        last = now;
        const applies = new Set<QuotaLimit>();
        for (const [limit, at] of deadlines) if (at !== null && now >= at) applies.add(limit);
        if (tpl.usageMs !== null && usage >= tpl.usageMs) applies.add('usage-time');
        if (tpl.maxBytesIn !== null && bytesIn + step.requestBytes > tpl.maxBytesIn) applies.add('bytes-in');
        if (tpl.maxBytesOut !== null && bytesOut >= tpl.maxBytesOut) applies.add('bytes-out');
        if (tpl.maxBytesTotal !== null && bytesIn + bytesOut + step.requestBytes > tpl.maxBytesTotal) applies.add('bytes-total');
        if (tpl.maxBytesTotal !== null && bytesIn + bytesOut >= tpl.maxBytesTotal) applies.add('bytes-total');
        const limit = meterLimit(quota, step.requestBytes, now);
        steps++;
        if (limit !== undefined) {
          refusals++;
          if (!applies.has(limit)) throw new Error(`refused by ${limit}, which does not apply (${[...applies]})`);
          const ended = endedAt(quota, limit, now);
          if (ended.endedBy !== limit) throw new Error('endedBy not set');
          if (ended.bytesIn !== bytesIn || ended.usageMs !== usage) throw new Error('a refused request was counted, or its time was not');
          return;
        }
        if (applies.size > 0) throw new Error(`not refused though ${[...applies]} applies`);
        bytesIn += step.requestBytes;
        bytesOut += step.replyBytes;
        lastReply = step.replyBytes;
        quota = charged(quota, step.requestBytes, step.replyBytes, now, now + 60_000);
        if (quota.bytesIn !== bytesIn || quota.bytesOut !== bytesOut) throw new Error(`counters ${quota.bytesIn}/${quota.bytesOut}, model ${bytesIn}/${bytesOut}`);
        if (quota.usageMs !== usage) throw new Error(`usage ${quota.usageMs}, model ${usage}`);
        if (tpl.maxBytesIn !== null && quota.bytesIn > tpl.maxBytesIn) throw new Error('bytes-in passed');
        if (tpl.maxBytesOut !== null && quota.bytesOut - lastReply >= tpl.maxBytesOut) throw new Error('bytes-out passed by more than one reply');
        if (tpl.maxBytesTotal !== null && quota.bytesIn + quota.bytesOut - lastReply > tpl.maxBytesTotal) throw new Error('bytes-total passed by more than one reply');
        const left = remaining(quota, now);
        if (tpl.maxBytesIn !== null && left.bytesIn !== Math.max(0, tpl.maxBytesIn - bytesIn)) throw new Error('remaining bytes-in wrong');
      }
    }),
    { numRuns: 2_000 },
  );
  t.ok(refusals > 200, `limits were met (${refusals} refusals in ${steps} exchanges)`);
});

t.test('a later connection starts from what the code spent, and from its first use', async (t) => {
  const tpl = template({ maxBytesIn: null, maxBytesOut: null, maxBytesTotal: 1000, connectionMs: null, usageMs: null, wallMs: 60_000, ageMs: null });
  const used: CodeRecord = { ...code(0), firstUsedAt: 10_000, used: { bytesIn: 400, bytesOut: 500, usageMs: 0 } };
  const quota = deriveQuota(tpl, used, 30_000, 60_000, null);
  t.equal(quota.deadline, 70_000, 'wall-clock time runs from the first use, not from this login');
  t.equal(quota.deadlineLimit, 'wall-time');
  t.equal(quota.codeEndsAt, 70_000);
  t.equal(meterLimit(quota, 100, 31_000), undefined, 'exactly at the cap is allowed');
  t.equal(meterLimit(quota, 101, 31_000), 'bytes-total', 'one byte past it is not');
  t.equal(meterLimit(quota, 1, 70_000), 'wall-time', 'at the deadline');
});
