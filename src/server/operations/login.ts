import { RotorError } from '../../errors.ts';
import { revoke } from '../../session/machine.ts';
import { replyFromRest } from '../../session/replay.ts';
import { deriveId } from '../../session/token.ts';
import type { SessionState } from '../../session/types.ts';
import type { UserRecord } from '../../store/types.ts';
import { getHeader, Reply, type RequestFrame } from '../../wire/index.ts';
import { dummyHash, HashLimiter, matchTotp, verifyPassword } from '../auth.ts';
import { parseMetaBody, type DispatchContext, type Note } from '../context.ts';
import { openSession } from './open-session.ts';

/**
 * `POST /rotor/login`: User and Password (and TOTP when the user has a secret) open a session.
 * Password hashing is bounded (HashLimiter); an unknown user costs the same hash as a known one.
 */
export function login(ctx: DispatchContext): (frame: RequestFrame, note: Note) => Promise<Reply> {
  const { auth, session } = ctx.config;
  const hashing = new HashLimiter(auth);
  const unknownUserHash = dummyHash(auth);
  return async (frame, note) => {
    const user = getHeader(frame, 'User');
    const password = getHeader(frame, 'Password');
    if (!user || password === undefined) throw new RotorError('ROTOR_E_BAD_REQUEST', 'login needs User and Password');
    if (Buffer.byteLength(user) > auth.maxUserNameBytes) throw new RotorError('ROTOR_E_BAD_REQUEST', 'user name too long');
    note.user = user;
    const meta = parseMetaBody(frame, session.maxMetaBytes);
    const record = await ctx.store.loadUser(user);
    const passwordOk = await hashing.run(() => verifyPassword(password, record?.passwordHash ?? unknownUserHash));
    if (!record || !passwordOk) throw new RotorError('ROTOR_E_AUTH_FAILED');
    note.passwordOk = true;
    if (record.totpSecret) {
      const code = getHeader(frame, 'TOTP');
      if (!code) throw new RotorError('ROTOR_E_TOTP_REQUIRED');
      const step = matchTotp(record.totpSecret, code, ctx.now(), auth.totpWindow);
      if (step === undefined) throw new RotorError('ROTOR_E_AUTH_FAILED');
      return totpLogin(ctx, record, step, meta, note);
    }
    const { reply, state } = await openSession(ctx, user, meta);
    note.session = state.id;
    return reply;
  };
}

/**
 * A TOTP code works once, so a login whose reply was lost could not be sent again. Its session
 * id is therefore derived from (key, user, step): the same login sent again finds the session
 * its code opened and, while that session's first token is unused, gets the identical reply.
 * The session is stored before the step is burned, so a store error costs the user nothing.
 */
function totpLogin(ctx: DispatchContext, record: UserRecord, step: number, meta: Record<string, unknown>, note: Note): Promise<Reply> {
  const { store } = ctx;
  const id = deriveId(ctx.keys, `totp-login\0${record.name}\0${step}`);
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
    const earlier = await store.loadSession(id);
    if (earlier) return again(earlier);
    let opened: { reply: Reply; state: SessionState };
    try {
      opened = await openSession(ctx, record.name, meta, id);
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
