import { RotorError, type ErrorCode } from '../../errors.ts';
import { revoke } from '../../session/machine.ts';
import { replyFromRest } from '../../session/replay.ts';
import { derivedIds } from '../../session/token.ts';
import type { SessionState } from '../../session/types.ts';
import type { UserRecord } from '../../store/types.ts';
import { addressKey, type Origin } from '../../net/origin.ts';
import { getHeader, Reply, type RequestFrame } from '../../wire/index.ts';
import { dummyHash, HashLimiter, LoginThrottle, matchTotp, verifyPassword, type ThrottleKey } from '../auth.ts';
import { loginWithCode, meteredPasswordLogin } from '../../quotas/login.ts';
import { bindingOf, parseMetaBody, refused, type DispatchContext, type Note } from '../context.ts';
import { openSession } from './open-session.ts';
import { handOverLogin } from '../../handover/login.ts';

/**
 * `POST /rotor/login`: User and Password (and TOTP when the user has a secret) open a session.
 * Password hashing is bounded (HashLimiter); an unknown user costs the same hash as a known one.
 * Failures are counted in the store per (user, address), address and user (LoginThrottle): a
 * login one of those counters holds in its wait is refused before anything else is looked at —
 * the same reply, at the same cost, for a user that exists and one that does not.
 */
export function login(ctx: DispatchContext): (frame: RequestFrame, note: Note, path: string, origin?: Origin) => Promise<Reply> {
  const { auth, session } = ctx.config;
  const hashing = new HashLimiter(auth);
  const throttle = new LoginThrottle(auth, ctx.store);
  const unknownUserHash = dummyHash(auth);
  return async (frame, note, _path, origin) => {
    // A hand-over from a peer (spec §11): its token is checked before anything else of the frame is read.
    const handOver = getHeader(frame, 'Hand-over');
    if (handOver !== undefined) {
      // A forged hand-over costs an Ed25519 check (≈ 130 µs): counted against its address like a wrong password.
      const keys = throttle.keys('', addressKey(origin?.peer));
      const waiting = await throttle.waitMs(keys, ctx.now());
      if (waiting > 0) return throttled(note, waiting);
      return counted(throttle, keys, ctx.now(), 'ROTOR_E_HANDOVER_INVALID', () => handOverLogin(ctx, frame, handOver, note, origin));
    }
    const user = getHeader(frame, 'User');
    const typedCode = getHeader(frame, 'Code');
    if (typedCode !== undefined && user === undefined) return codeOnlyLogin(ctx, throttle, frame, typedCode, note, origin);
    const password = getHeader(frame, 'Password');
    if (!user || password === undefined) throw new RotorError('ROTOR_E_BAD_REQUEST', 'login needs User and Password');
    if (Buffer.byteLength(user) > auth.maxUserNameBytes) throw new RotorError('ROTOR_E_BAD_REQUEST', 'user name too long');
    note.user = user;
    const meta = parseMetaBody(frame, session.maxMetaBytes);
    const address = addressKey(origin?.peer);
    const binding = bindingOf(ctx, frame, address);
    const keys = throttle.keys(user, address);
    const waiting = await throttle.waitMs(keys, ctx.now());
    if (waiting > 0) return throttled(note, waiting);
    const record = await ctx.store.loadUser(user);
    // The counters are checked again once a login has waited for its hash (others may have failed
    // meanwhile), and a failure is counted before the slot goes to the next: a burst of guesses
    // sent at once is held to the same counts as guesses sent one by one.
    const checked = await hashing.run(async (queued) => {
      if (queued) {
        const wait = await throttle.waitMs(keys, ctx.now());
        if (wait > 0) return wait;
      }
      const ok = (await verifyPassword(password, record?.passwordHash ?? unknownUserHash)) && record !== undefined;
      if (!ok) await throttle.failed(keys, ctx.now());
      return ok;
    });
    if (typeof checked === 'number') return throttled(note, checked);
    if (!record || !checked) throw new RotorError('ROTOR_E_AUTH_FAILED');
    note.passwordOk = true;
    let reply: Reply;
    if (record.totpSecret) {
      const code = getHeader(frame, 'TOTP');
      if (!code) throw new RotorError('ROTOR_E_TOTP_REQUIRED');
      const step = matchTotp(record.totpSecret, code, ctx.now(), auth.totpWindow);
      try {
        if (step === undefined) throw new RotorError('ROTOR_E_AUTH_FAILED');
        reply = await totpLogin(ctx, record, step, meta, note, binding);
      } catch (err) {
        // A wrong, an old or a spent code: a failure like a wrong password.
        if (err instanceof RotorError && err.code === 'ROTOR_E_AUTH_FAILED') await throttle.failed(keys, ctx.now());
        throw err;
      }
    } else if (typedCode !== undefined) {
      // A code issued to this user: their password and the code (spec §10).
      reply = await counted(throttle, keys, ctx.now(), 'ROTOR_E_CODE_INVALID', () => loginWithCode(ctx, typedCode, { user, meta, binding, note }));
    } else if (ctx.config.quotas.passwordTemplate !== '') {
      reply = await meteredPasswordLogin(ctx, { user, meta, binding, note });
    } else {
      const { reply: opened, state } = await openSession(ctx, user, meta, undefined, binding);
      note.session = state.id;
      reply = opened;
    }
    // The session is open whatever happens here: a counter not forgotten only expires later.
    await throttle.succeeded(user, address).catch((err: unknown) => ctx.log.warn({ err, user }, 'clearing login failures failed'));
    return reply;
  };
}

/** `POST /rotor/login` with a Code and no User (spec §10): throttled by the address alone, a code no one issued counted as a failure. */
async function codeOnlyLogin(ctx: DispatchContext, throttle: LoginThrottle, frame: RequestFrame, typedCode: string, note: Note, origin?: Origin): Promise<Reply> {
  const meta = parseMetaBody(frame, ctx.config.session.maxMetaBytes);
  const address = addressKey(origin?.peer);
  const binding = bindingOf(ctx, frame, address);
  const keys = throttle.keys('', address);
  const waiting = await throttle.waitMs(keys, ctx.now());
  if (waiting > 0) return throttled(note, waiting);
  return counted(throttle, keys, ctx.now(), 'ROTOR_E_CODE_INVALID', () => loginWithCode(ctx, typedCode, { user: '', meta, binding, note }));
}

/** Run a login; refused with one of `failures` (a code never issued, a forged hand-over token or seal), it counts as a failed login. */
export async function counted(throttle: LoginThrottle, keys: ThrottleKey[], now: number, failures: ErrorCode | readonly ErrorCode[], run: () => Promise<Reply>): Promise<Reply> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof RotorError && (typeof failures === 'string' ? err.code === failures : failures.includes(err.code))) await throttle.failed(keys, now);
    throw err;
  }
}

/** 429 ROTOR_E_RATE_LIMITED with `Wait-for`: the whole seconds left of the wait, at least 1. */
export function throttled(note: Note, waitMs: number): Reply {
  return refused(note, 'ROTOR_E_RATE_LIMITED', [['Wait-for', String(Math.max(1, Math.ceil(waitMs / 1000)))]]);
}

/**
 * A TOTP code works once, so a login whose reply was lost could not be sent again. Its session
 * id is therefore derived from (key, user, step): the same login sent again finds the session
 * its code opened and, while that session's first token is unused, gets the identical reply.
 * The session is stored before the step is burned, so a store error costs the user nothing.
 */
function totpLogin(ctx: DispatchContext, record: UserRecord, step: number, meta: Record<string, unknown>, note: Note, binding: string | undefined): Promise<Reply> {
  const { store } = ctx;
  // The id under the signing key; the same login may have opened it under a key that signed before a rotation.
  const [id, ...before] = derivedIds(ctx.keys, `totp-login\0${record.name}\0${step}`);
  note.session = id;
  // Burn the step. Refused when it is already burned: by a newer step (the code is spent), or by
  // this very step — which only a login deriving this same session id can have done.
  const burn = async (): Promise<boolean> => (await store.acceptTotpStep(record.name, step)) || (await store.loadUser(record.name))?.lastTotpStep === step;
  const again = async (earlier: SessionState): Promise<Reply> => {
    // Only a session nobody has used yet is handed out again, and only for the step it was opened with.
    if (earlier.gen !== 1 || earlier.acked || earlier.revoked || !earlier.prev) throw new RotorError('ROTOR_E_AUTH_FAILED');
    if (record.lastTotpStep !== step && !(await burn())) throw new RotorError('ROTOR_E_AUTH_FAILED');
    const bytes = replyFromRest(ctx.keys, earlier.prev.reply, earlier.tokenHash);
    if (!bytes) throw new RotorError('ROTOR_E_AUTH_FAILED');
    note.outcome = 'replay';
    ctx.log.warn({ event: 'totp_login_again', user: record.name, session: id }, 'a TOTP login was sent again: the same reply');
    return Reply.fromBytes(bytes);
  };
  return ctx.locks.run(id, async () => {
    for (const candidate of [id, ...before]) {
      const earlier = await store.loadSession(candidate);
      if (earlier) {
        note.session = candidate;
        return again(earlier);
      }
    }
    let opened: { reply: Reply; state: SessionState };
    try {
      opened = await openSession(ctx, record.name, meta, id, binding);
    } catch (err) {
      // Another node stored the session first (the same login sent to two nodes at once).
      const raced = await store.loadSession(id);
      if (!raced) throw err;
      return again(raced);
    }
    const { reply, state } = opened;
    if (!(await burn())) {
      // A newer step was used meanwhile: this code is spent, and its session must never work.
      const now = ctx.now();
      await store.commitSession(revoke(state, 'deleted', now, now + ctx.revokedRetentionMs).state, 0, []);
      throw new RotorError('ROTOR_E_AUTH_FAILED');
    }
    return reply;
  });
}
