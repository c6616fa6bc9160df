/**
 * The pure session machine (src/session/machine.ts), one transition of spec.md's table at a
 * time: ack + proceed (releasing held work), proceed, replay, reuse (revoking, cancelling held
 * work), revoked, expired, a generation newer than the store's, a hash that does not match.
 */
import t from 'tap';
import { admit, createSession, isExpired, releasedTasks, revoke, rotate, type Rotation } from '../../src/session/machine.ts';
import type { Admission, SessionState, TaskSpec } from '../../src/session/types.ts';

const NOW = 1_000_000;
const TTL = 120_000;
const REVOKED_UNTIL = NOW + 86_400_000;
const task = (id: string): TaskSpec => ({ id, name: 'count', payload: { id } });

/** Freeze deeply, so that a machine that mutates its input throws. */
function frozen<T>(value: T): T {
  if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    for (const inner of Object.values(value)) frozen(inner);
    Object.freeze(value);
  }
  return value;
}

function fresh(): SessionState {
  return frozen(createSession({ id: 'S', user: 'ann', tokenHash: 'h1', expiresAt: NOW + TTL, meta: { a: 1 }, now: NOW }));
}

function rotation(gen: number, tasks: TaskSpec[] = []): Rotation {
  return { nextHash: `h${gen + 1}`, nextExpiresAt: NOW + TTL + gen, reply: Buffer.from(`reply ${gen}`), tasks, meta: { gen } };
}

/** Present generation `gen` with its own hash (`h<gen>`); proceed → rotate, like the driver does. */
function use(state: SessionState, gen: number, tasks: TaskSpec[] = [], now = NOW): { admission: Admission; state: SessionState } {
  const admission = admit(state, { gen, hash: `h${gen}` }, now, REVOKED_UNTIL);
  if (admission.verdict !== 'proceed') return { admission, state: admission.verdict === 'reject' && admission.state ? admission.state : state };
  return { admission, state: frozen(rotate(admission.state, rotation(admission.state.gen, tasks))) };
}

t.test('createSession: generation 1, nothing acked, nothing held', async (t) => {
  t.strictSame(fresh(), {
    id: 'S',
    user: 'ann',
    rev: 0,
    gen: 1,
    tokenHash: 'h1',
    acked: false,
    prev: null,
    held: [],
    meta: { a: 1 },
    createdAt: NOW,
    expiresAt: NOW + TTL,
    revoked: null,
    quota: null,
    seal: null,
  });
});

t.test('newest token, not acked: ack (held work released, previous token dies), then proceed', async (t) => {
  const s2 = use(fresh(), 1, [task('T')]).state;
  t.equal(s2.gen, 2);
  t.same(s2.prev, { hash: 'h1', reply: Buffer.from('reply 1') }, 'the reply is kept for replay');
  t.strictSame(s2.held, [task('T')], 'the task waits for the ack');
  const admission = admit(s2, { gen: 2, hash: 'h2' }, NOW, REVOKED_UNTIL);
  t.equal(admission.verdict, 'proceed');
  if (admission.verdict !== 'proceed') return;
  t.strictSame(admission.effects, [{ type: 'release', tasks: [task('T')] }]);
  t.strictSame(releasedTasks(admission.effects), [task('T')]);
  t.equal(admission.state.acked, true);
  t.equal(admission.state.prev, null, 'the previous token and its reply are gone');
  t.strictSame(admission.state.held, []);
  t.equal(admission.state.gen, 2, 'the ack itself does not rotate');
});

t.test('newest token, not acked, nothing held: proceed without effects', async (t) => {
  const admission = admit(fresh(), { gen: 1, hash: 'h1' }, NOW, REVOKED_UNTIL);
  t.equal(admission.verdict, 'proceed');
  if (admission.verdict === 'proceed') {
    t.strictSame(admission.effects, []);
    t.equal(admission.state.acked, true);
  }
});

t.test('newest token, already acked: proceed, state unchanged (the same object)', async (t) => {
  const s2 = use(fresh(), 1, [task('T')]).state;
  const acked = admit(s2, { gen: 2, hash: 'h2' }, NOW, REVOKED_UNTIL);
  if (acked.verdict !== 'proceed') return t.fail('the ack should proceed');
  const again = admit(frozen(acked.state), { gen: 2, hash: 'h2' }, NOW, REVOKED_UNTIL);
  t.equal(again.verdict, 'proceed');
  if (again.verdict === 'proceed') {
    t.equal(again.state, acked.state);
    t.strictSame(again.effects, [], 'nothing released twice');
  }
});

t.test('previous token before the ack: replay the stored reply, change nothing', async (t) => {
  const s2 = use(fresh(), 1, [task('T')]).state;
  const admission = admit(s2, { gen: 1, hash: 'h1' }, NOW, REVOKED_UNTIL);
  t.equal(admission.verdict, 'replay');
  if (admission.verdict === 'replay') t.same(admission.reply, Buffer.from('reply 1'));
  t.equal(admit(s2, { gen: 1, hash: 'h1' }, NOW, REVOKED_UNTIL).verdict, 'replay', 'as often as asked');
  t.strictSame(s2.held, [task('T')], 'held work stays held');
});

t.test('previous token before the ack, ending the session: proceeds unacked, and the end cancels the held work', async (t) => {
  const s2 = use(fresh(), 1, [task('T')]).state;
  const admission = admit(s2, { gen: 1, hash: 'h1' }, NOW, REVOKED_UNTIL, true);
  t.equal(admission.verdict, 'proceed');
  if (admission.verdict !== 'proceed') return;
  t.equal(admission.state, s2, 'nothing acknowledged');
  t.strictSame(releasedTasks(admission.effects), [], 'nothing released');
  const ended = revoke(admission.state, 'logout', NOW, REVOKED_UNTIL);
  t.strictSame(ended.effects[0], { type: 'cancel', tasks: [task('T')] }, 'the held work is cancelled');
  t.equal(admit(s2, { gen: 1, hash: 'h9' }, NOW, REVOKED_UNTIL, true).verdict, 'reject', 'a wrong hash is still refused');
});

t.test('previous token after the ack: reuse', async (t) => {
  const s3 = use(use(fresh(), 1).state, 2).state; // tokens 1 and 2 used: the newest is 3
  const acked = admit(s3, { gen: 3, hash: 'h3' }, NOW, REVOKED_UNTIL);
  if (acked.verdict !== 'proceed') return t.fail('the ack should proceed');
  const admission = admit(frozen(acked.state), { gen: 2, hash: 'h2' }, NOW, REVOKED_UNTIL);
  t.equal(admission.verdict, 'reject');
  if (admission.verdict === 'reject') t.equal(admission.code, 'ROTOR_E_TOKEN_REUSED');
});

t.test('an older token: reuse revokes the session and cancels held work', async (t) => {
  const s3 = use(use(fresh(), 1).state, 2, [task('T')]).state;
  const admission = admit(s3, { gen: 1, hash: 'h1' }, NOW + 5, REVOKED_UNTIL);
  t.equal(admission.verdict, 'reject');
  if (admission.verdict !== 'reject') return;
  t.equal(admission.code, 'ROTOR_E_TOKEN_REUSED');
  t.strictSame(admission.effects, [
    { type: 'cancel', tasks: [task('T')] },
    { type: 'revoked', reason: 'reuse' },
  ]);
  t.strictSame(releasedTasks(admission.effects), [], 'cancelled work is never released');
  t.ok(admission.state, 'the revocation must be stored');
  t.strictSame(admission.state?.revoked, { at: NOW + 5, reason: 'reuse' });
  t.strictSame(admission.state?.held, []);
  t.equal(admission.state?.prev, null, 'no replay after a revocation');
  t.equal(admission.state?.expiresAt, REVOKED_UNTIL, 'kept until the retention ends');
});

t.test('a revoked session refuses every token, the newest too', async (t) => {
  const s2 = use(fresh(), 1).state;
  const revoked = frozen(revoke(s2, 'logout', NOW, REVOKED_UNTIL).state);
  for (const gen of [1, 2, 3]) {
    const admission = admit(revoked, { gen, hash: `h${gen}` }, NOW, REVOKED_UNTIL);
    t.equal(admission.verdict, 'reject', `gen ${gen}`);
    if (admission.verdict === 'reject') {
      t.equal(admission.code, 'ROTOR_E_SESSION_REVOKED');
      t.equal(admission.state, undefined, 'nothing to store');
      t.strictSame(admission.effects, []);
    }
  }
});

t.test('expired: the newest token from its expiry on, not a millisecond before', async (t) => {
  const s = fresh();
  const at = (now: number) => admit(s, { gen: 1, hash: 'h1' }, now, REVOKED_UNTIL);
  t.equal(at(NOW + TTL - 1).verdict, 'proceed');
  const expired = at(NOW + TTL);
  t.equal(expired.verdict, 'reject');
  if (expired.verdict === 'reject') t.equal(expired.code, 'ROTOR_E_TOKEN_EXPIRED');
  t.equal(isExpired(s, NOW + TTL - 1), false);
  t.equal(isExpired(s, NOW + TTL), true);
  const never = frozen({ ...s, expiresAt: null });
  t.equal(isExpired(never, Number.MAX_SAFE_INTEGER), false, 'null never expires');
  t.equal(admit(never, { gen: 1, hash: 'h1' }, Number.MAX_SAFE_INTEGER, REVOKED_UNTIL).verdict, 'proceed');
});

t.test('a generation newer than the stored one: ROTOR_E_SESSION_UNKNOWN, nothing changes', async (t) => {
  for (const state of [fresh(), use(fresh(), 1).state]) {
    const admission = admit(state, { gen: state.gen + 1, hash: 'whatever' }, NOW, REVOKED_UNTIL);
    t.equal(admission.verdict, 'reject');
    if (admission.verdict === 'reject') {
      t.equal(admission.code, 'ROTOR_E_SESSION_UNKNOWN');
      t.equal(admission.state, undefined);
    }
  }
});

t.test('a hash that does not match: ROTOR_E_TOKEN_INVALID (newest and replayable), nothing changes', async (t) => {
  const s2 = use(fresh(), 1, [task('T')]).state;
  for (const gen of [2, 1]) {
    const admission = admit(s2, { gen, hash: 'not-it' }, NOW, REVOKED_UNTIL);
    t.equal(admission.verdict, 'reject', `gen ${gen}`);
    if (admission.verdict === 'reject') {
      t.equal(admission.code, 'ROTOR_E_TOKEN_INVALID');
      t.equal(admission.state, undefined, 'no revocation');
      t.strictSame(admission.effects, [], 'nothing released');
    }
  }
});

t.test('rotate: only an admitted (acked), live session', async (t) => {
  t.throws(() => rotate(fresh(), rotation(1)), /admitted/, 'not acked');
  const admitted = admit(fresh(), { gen: 1, hash: 'h1' }, NOW, REVOKED_UNTIL);
  if (admitted.verdict !== 'proceed') return t.fail('should proceed');
  t.throws(() => rotate(revoke(admitted.state, 'logout', NOW, REVOKED_UNTIL).state, rotation(1)), /admitted/, 'revoked');
  const next = rotate(admitted.state, rotation(1, [task('T')]));
  t.strictSame(
    { gen: next.gen, tokenHash: next.tokenHash, acked: next.acked, held: next.held, meta: next.meta, expiresAt: next.expiresAt },
    { gen: 2, tokenHash: 'h2', acked: false, held: [task('T')], meta: { gen: 1 }, expiresAt: NOW + TTL + 1 },
  );
});

t.test('revoke: effects once, then nothing', async (t) => {
  const s2 = use(fresh(), 1, [task('T')]).state;
  const first = revoke(s2, 'deleted', NOW, REVOKED_UNTIL);
  t.strictSame(first.effects, [
    { type: 'cancel', tasks: [task('T')] },
    { type: 'revoked', reason: 'deleted' },
  ]);
  const second = revoke(frozen(first.state), 'logout', NOW + 1, REVOKED_UNTIL + 1);
  t.equal(second.state, first.state, 'already revoked: unchanged');
  t.strictSame(second.effects, []);
  t.strictSame(revoke(fresh(), 'logout', NOW, REVOKED_UNTIL).effects, [{ type: 'revoked', reason: 'logout' }], 'nothing held, nothing cancelled');
});
