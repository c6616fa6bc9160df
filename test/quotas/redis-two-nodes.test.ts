/**
 * Access codes (spec §10) on two rotor nodes sharing one Redis, each with its own connection:
 * one metered session spends its code's bytes with exchanges sent to either node at random —
 * and the same token now and then to both at once, or to one and then again to the other (a
 * retry after a lost reply) — and the code's counters hold exactly the bytes of the exchanges
 * processed, each once; the cap is passed by at most one reply. Two logins with one code sent
 * to both nodes at once open one connection.
 */
import t from 'tap';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { codeId, normalizeCode } from '../../src/quotas/codes.ts';
import { issueLot, templateRecord } from '../../src/quotas/templates.ts';
import type { CodeRecord } from '../../src/quotas/types.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing, verifyToken } from '../../src/session/token.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { frameSize, getHeader, type Reply, type RequestFrame } from '../../src/wire/index.ts';
import { startRedis } from '../helpers/redis.ts';
import { uid } from '../store/suite.ts';

// Fails the file, loudly, when redis-server cannot be started: CI must have it.
const server = await startRedis();
t.teardown(() => server.close());

const CAP = 40_000;
const LOGIN_ROUNDS = 25;
/** A guard against a loop that never meets the cap; it is met after about a hundred exchanges. */
const MAX_EXCHANGES = 2_000;

/** Answers at once, so every exchange is one frame each way: `POST /echo` sends its body back. */
const app: RotorApp = {
  routes: {
    'POST /echo': (request) => ({ body: request.body ?? Buffer.alloc(0), contentType: 'application/octet-stream' }),
    'GET /hello': () => ({ body: 'hello', contentType: 'text/plain' }),
  },
  tasks: {},
};

const prefix = uid('rotor-quota');
const stores = await Promise.all([RedisStore.open(server.url, { prefix }), RedisStore.open(server.url, { prefix })]);
t.teardown(() => Promise.all(stores.map((s) => s.close())));
/** Compare-and-sets each node lost (another node changed the record first): proof that they raced. */
const lost = { sessions: 0, codes: 0 };
for (const store of stores) {
  const commitSession = store.commitSession.bind(store);
  store.commitSession = async (...args) => {
    const won = await commitSession(...args);
    if (!won) lost.sessions++;
    return won;
  };
  const commitRecord = store.commitRecord.bind(store);
  store.commitRecord = async (...args) => {
    const won = await commitRecord(...args);
    if (!won && args[0] === 'code') lost.codes++;
    return won;
  };
}
const config = resolveConfig({ auth: { scryptN: 1024 } });
const keys = KeyRing.generate(seededRandom(2));
const [a, b] = stores.map((store, i) => new Rotor({ config, store, app, keys, log: silentLogger(), random: seededRandom(10 + i) }));
const store = stores[0];

const template = templateRecord('pass', { maxBytesTotal: CAP }, Date.now());
t.ok(await store.commitRecord('template', 'pass', template, 0), 'the template is stored');
const issue = (id: string, count: number, seed: number) => issueLot(store, seededRandom(seed), { id, template, count, comment: '', issuer: 'test', owner: '', now: Date.now() });
const codeRecord = async (code: string): Promise<CodeRecord> => (await store.loadRecord<CodeRecord>('code', codeId(normalizeCode(code)!)))!.value;

const request = (verb: string, path: string, headers: Array<[string, string]>, body?: Buffer): RequestFrame => ({ kind: 'request', verb, path, headers, body });
const login = (node: Rotor, code: string) => node.dispatch(request('POST', '/rotor/login', [['Code', code]]));
const tokenOf = (reply: Reply) => getHeader(reply.frame, 'Token');
const errorOf = (reply: Reply) => getHeader(reply.frame, 'Error');

t.test('one session spends its code on two nodes: each exchange counted once, the cap passed by at most one reply', async (t) => {
  const { codes } = await issue('spend', 1, 21);
  // A new walk each run; the seed is in the comment below, to replay one that failed.
  const seed = Date.now() % 1_000_000;
  const random = seededRandom(seed);
  const pick = (n: number) => random(1)[0] % n;
  const opened = await login(a, codes[0]);
  let token = tokenOf(opened);
  t.ok(token, 'the code logs in at A');

  /** Every reply that brought a token never seen before, by that token: a replay must be these bytes. */
  const replies = new Map<string, Buffer>();
  const counted = { bytesIn: 0, bytesOut: 0, exchanges: 0 };
  const seen = { replays: 0, conflicts: 0, both: 0, retries: 0, quotaChecks: 0 };
  let lastReply = 0;
  let refusal: { reply: Reply; size: number } | undefined;
  const problems: string[] = [];

  /** What a reply to `frame` means for the client; the spend ends at the refusal. */
  const take = (frame: RequestFrame, reply: Reply, alongside: boolean) => {
    const next = tokenOf(reply);
    if (next !== undefined) {
      const earlier = replies.get(next);
      if (earlier) {
        // A replay is counted like any exchange (spec §10): its request, and the reply sent again.
        seen.replays++;
        if (!earlier.equals(reply.bytes)) problems.push(`a replay of ${next.slice(0, 20)}… differs from its first reply`);
        counted.bytesIn += frameSize(frame);
        counted.bytesOut += reply.bytes.length;
        lastReply = reply.bytes.length;
        return;
      }
      replies.set(next, reply.bytes);
      counted.bytesIn += frameSize(frame);
      counted.bytesOut += reply.bytes.length;
      counted.exchanges++;
      lastReply = reply.bytes.length;
      token = next;
      if (frame.path === '/rotor/quota') {
        // The status counts its own request, its reply not yet (spec §10): our count before this reply.
        const used = JSON.parse(reply.frame.body!.toString()).used;
        seen.quotaChecks++;
        if (used.bytesIn !== counted.bytesIn || used.bytesOut !== counted.bytesOut - reply.bytes.length) {
          problems.push(`GET /rotor/quota says ${used.bytesIn} in, ${used.bytesOut} out; the client counted ${counted.bytesIn}, ${counted.bytesOut - reply.bytes.length}`);
        }
      }
      return;
    }
    const error = errorOf(reply);
    if (error === 'ROTOR_E_CONFLICT') seen.conflicts++;
    else if (error === 'ROTOR_E_QUOTA_BYTES_TOTAL') refusal ??= { reply, size: frameSize(frame) };
    // The same token sent alongside the refused one, or again after it: it may find the session already ended.
    else if (!(alongside && error === 'ROTOR_E_SESSION_REVOKED')) problems.push(`${frame.verb} ${frame.path}: ${reply.status} ${error}`);
  };

  while (!refusal && counted.exchanges + seen.conflicts < MAX_EXCHANGES) {
    const headers: Array<[string, string]> = [['Token', token!]];
    const kind = pick(8);
    const frame =
      kind === 0
        ? request('GET', '/rotor/quota', headers)
        : kind === 1
          ? request('GET', '/hello', headers)
          : request('POST', '/echo', headers, Buffer.alloc(pick(100) + pick(100), 'x'));
    const mode = pick(4);
    if (mode === 0) {
      // The same token to both nodes at once: one processes it, the other replays it (or retries and then replays).
      seen.both++;
      const both = await Promise.all([a.dispatch(frame), b.dispatch(frame)]);
      const order = pick(2) === 0 ? both : [both[1], both[0]];
      for (const reply of order) take(frame, reply, true);
      if (both.every((reply) => tokenOf(reply) !== undefined) && !both[0].bytes.equals(both[1].bytes)) problems.push('one token sent to both nodes at once was processed by both');
    } else if (mode === 1) {
      // A reply lost on the way: the same frame again, to the other node.
      seen.retries++;
      const first = pick(2) === 0 ? a : b;
      const reply = await first.dispatch(frame);
      const again = await (first === a ? b : a).dispatch(frame);
      take(frame, reply, false);
      // After a refusal the session is over: the retry hears it is revoked (spec §10).
      take(frame, again, true);
      // A replay is metered (spec §10): the retry that would pass the cap is the refusal (take() checks its code), any other is the identical reply.
      const refusedAtCap = errorOf(again) === 'ROTOR_E_QUOTA_BYTES_TOTAL';
      if (tokenOf(reply) !== undefined && !refusedAtCap && !again.bytes.equals(reply.bytes)) problems.push('a retry to the other node did not get the identical reply');
    } else {
      take(frame, await (pick(2) === 0 ? a : b).dispatch(frame), false);
    }
  }

  t.same(problems, [], 'every reply was a new exchange, the identical replay of one, a conflict to retry, or the refusal');
  t.ok(refusal, `the cap refused a request after ${counted.exchanges} exchanges`);
  t.comment(
    `seed ${seed}: ${counted.exchanges} exchanges processed, ${seen.replays} replays, ${seen.conflicts} conflicts, ${seen.both} tokens sent to both nodes at once, ` +
      `${seen.retries} sent again to the other node, ${lost.sessions} session compare-and-sets lost`,
  );
  t.ok(seen.quotaChecks > 0, `GET /rotor/quota agreed with the client's count ${seen.quotaChecks} times`);
  t.ok(lost.sessions > 0, 'the nodes did race for the session');
  t.equal(refusal?.reply.status, 403);
  t.equal(errorOf(refusal!.reply), 'ROTOR_E_QUOTA_BYTES_TOTAL', 'the refusal names the cap');
  t.equal(getHeader(refusal!.reply.frame, 'Quota-Limit'), 'bytes-total');
  t.equal(tokenOf(refusal!.reply), undefined, 'and has no next token');

  const code = await codeRecord(codes[0]);
  t.same(code.used, { bytesIn: counted.bytesIn, bytesOut: counted.bytesOut, usageMs: code.used.usageMs }, 'the code holds exactly the frame bytes of the exchanges answered: each processed once, each replay as it was sent');
  t.equal(code.session, null, 'the connection was folded into the code');
  t.equal(code.status, 'exhausted');
  t.equal(code.lastEnd?.reason, 'bytes-total');
  const total = counted.bytesIn + counted.bytesOut;
  t.ok(total - lastReply <= CAP, `below the cap before the last reply (${total - lastReply} ≤ ${CAP})`);
  t.ok(total <= CAP + lastReply, `passed by at most that one reply (${total} ≤ ${CAP} + ${lastReply})`);
  t.ok(total + refusal!.size > CAP, `the refused request would have passed the cap (${total} + ${refusal!.size} > ${CAP})`);

  for (const [name, node] of [['A', a], ['B', b]] as const) {
    const after = await node.dispatch(request('GET', '/hello', [['Token', token!]]));
    t.equal(errorOf(after), 'ROTOR_E_SESSION_REVOKED', `${name} refuses the session's newest token`);
    const again = await login(node, codes[0]);
    t.same([errorOf(again), getHeader(again.frame, 'Quota-Limit')], ['ROTOR_E_CODE_SPENT', 'bytes-total'], `${name} refuses the code: spent`);
  }
});

t.test(`two logins with one code at once on two nodes open one connection (${LOGIN_ROUNDS} rounds)`, async (t) => {
  const { codes } = await issue('race-logins', LOGIN_ROUNDS, 22);
  const lostBefore = lost.codes;
  const outcomes = new Map<string, number>();
  const problems: string[] = [];
  for (const [round, code] of codes.entries()) {
    const order = round % 2 === 0 ? [a, b] : [b, a];
    const replies = await Promise.all(order.map((node) => login(node, code)));
    const got = replies.map(tokenOf).filter((token): token is string => token !== undefined);
    const shape = replies.map((r) => (tokenOf(r) ? 'token' : errorOf(r))).join(' + ');
    outcomes.set(shape, (outcomes.get(shape) ?? 0) + 1);
    const alike = got.length === 2 && replies[0].bytes.equals(replies[1].bytes);
    const inUse = got.length === 1 && replies.some((r) => errorOf(r) === 'ROTOR_E_CODE_IN_USE');
    if (!alike && !inUse) {
      problems.push(`round ${round}: ${shape}${got.length === 2 ? (got[0] === got[1] ? ', one token in different replies' : ', two tokens') : ''}`);
      continue;
    }
    const stored = await codeRecord(code);
    if (stored.connections !== 1 || stored.session !== verifyToken(keys, got[0]).session) problems.push(`round ${round}: the code has ${stored.connections} connections, not the one that answered`);
    // The connection that answered is live on either node: its token works at the other one, and the code is then in use.
    const used = await order[1].dispatch(request('GET', '/hello', [['Token', got[0]]]));
    if (used.status !== 200 || !tokenOf(used)) problems.push(`round ${round}: the login's token did not work at the other node: ${used.status} ${errorOf(used)}`);
    const busy = await order[0].dispatch(request('POST', '/rotor/login', [['Code', code]]));
    if (errorOf(busy) !== 'ROTOR_E_CODE_IN_USE') problems.push(`round ${round}: a login after the token was used got ${busy.status} ${errorOf(busy)}`);
  }
  t.comment(`outcomes: ${[...outcomes].map(([shape, n]) => `${n} × ${shape}`).join(', ')}; ${lost.codes - lostBefore} code compare-and-sets lost`);
  t.ok(lost.codes > lostBefore, 'the nodes did race for the code');
  t.same(problems, [], 'every round opened one connection: one token (the other login its identical reply, or in use), never two');
});

t.test('an ACK and a logout are exchanges of the session too: their requests and replies are counted (spec §10)', async (t) => {
  // Spec §10: "every exchange of the session — any request with its token, rotor's own paths
  // included" is counted, "the request as a frame …, the reply frame as sent".
  const { codes } = await issue('settle', 1, 23);
  let token = tokenOf(await login(a, codes[0]))!;
  const counted = { bytesIn: 0, bytesOut: 0 };
  const send = async (node: Rotor, verb: string, path: string) => {
    const frame = request(verb, path, [['Token', token]]);
    const reply = await node.dispatch(frame);
    if (reply.status >= 400) throw new Error(`${verb} ${path}: ${reply.status} ${errorOf(reply)}`);
    counted.bytesIn += frameSize(frame);
    counted.bytesOut += reply.bytes.length;
    token = tokenOf(reply) ?? token;
    return reply;
  };
  await send(a, 'GET', '/hello');
  await send(b, 'POST', '/rotor/ack');
  const before = { ...counted };
  const status = JSON.parse((await send(a, 'GET', '/rotor/quota')).frame.body!.toString());
  t.same(
    [status.used.bytesIn, status.used.bytesOut],
    [counted.bytesIn, before.bytesOut],
    "GET /rotor/quota after an ACK counts the ACK's reply (18 bytes, `ROTOR/1 200 OK`) as well as its request",
  );
  await send(b, 'POST', '/rotor/logout');
  const code = await codeRecord(codes[0]);
  t.equal(code.lastEnd?.reason, 'logout');
  t.same([code.used.bytesIn, code.used.bytesOut], [counted.bytesIn, counted.bytesOut], "the code holds the ACK's and the logout's replies too");
});
