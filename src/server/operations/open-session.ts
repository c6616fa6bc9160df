import { createSession } from '../../session/machine.ts';
import { replyAtRest } from '../../session/replay.ts';
import type { SessionState } from '../../session/types.ts';
import { keepUntil } from '../../quotas/machine.ts';
import type { SessionQuota } from '../../quotas/types.ts';
import type { SessionSeal } from '../../seal/types.ts';
import type { Header, Reply } from '../../wire/index.ts';
import { JSON_TYPE, mint, plainReply, type DispatchContext } from '../context.ts';

/**
 * A new session and its first token (a login, or note 004's token creation without one, whose
 * reply also carries the metadata). With `id` (a TOTP login) or `keepReply` (an access code's)
 * the reply is also kept for a retry. With `quota` the session is metered (spec §10): its token's
 * expiry goes into the quota, and the record is kept while the code lives. With `sealed` (and the
 * `id` its key was wrapped for) it is a sealed session (spec §12): the reply has its Seal-Nonce
 * and the server's Seal-Key.
 */
export async function openSession(
  ctx: DispatchContext,
  user: string,
  meta: Record<string, unknown>,
  id?: string,
  /** The client every token of the session is bound to (spec §2), if the server binds. */
  binding?: string,
  metered?: { quota: SessionQuota; keepReply: boolean; headers: Header[] },
  sealed?: { seal: SessionSeal; serverKey: string },
): Promise<{ reply: Reply; state: SessionState }> {
  const now = ctx.now();
  const sessionId = id ?? ctx.random(16).toString('base64url');
  const { token, hash, expiresAt } = mint(ctx, sessionId, 1, user, now, binding);
  const headers: Header[] = metered ? [['Token', token], ...metered.headers] : sealed ? [['Token', token], ['Seal-Nonce', hash], ['Seal-Key', sealed.serverKey]] : [['Token', token]];
  const reply = user === '' ? plainReply(200, [...headers, ['Content-Type', JSON_TYPE]], Buffer.from(JSON.stringify(meta))) : plainReply(200, headers);
  const keepReply = metered?.keepReply === true || (id !== undefined && sealed === undefined);
  const loginReply = keepReply ? replyAtRest(reply.bytes) : undefined;
  const quota = metered ? { ...metered.quota, tokenExpiresAt: expiresAt } : undefined;
  const keep = quota ? keepUntil(quota, ctx.revokedRetentionMs) : expiresAt;
  const state = createSession({ id: sessionId, user, tokenHash: hash, expiresAt: keep, meta, now, loginReply, quota, seal: sealed?.seal });
  await ctx.store.createSession(state);
  return { reply, state };
}
