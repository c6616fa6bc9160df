/**
 * The two exchanges the hand-over adds to rotor's own paths (spec §11):
 *
 * - `POST /rotor/login` with `Hand-over` and `Home` (src/server/operations/login.ts sends it here
 *   before it reads anything else): the token is checked offline first — its body is not parsed
 *   for a refused one —, then, when both servers share a store, the parent session itself; the
 *   token is spent (once per store) and a session of this server opens, `home` and `parent` in
 *   its metadata, linked to the parent so that the parent's end reaches it.
 * - `GET /rotor/revocations`, on the HTTP carrier only: this server's revocation list.
 */
import { RotorError } from '../errors.ts';
import { addressKey, type Origin } from '../net/origin.ts';
import { bindingOf, JSON_TYPE, parseMetaBody, plainReply, refused, type DispatchContext, type Note } from '../server/context.ts';
import { openSession } from '../server/operations/open-session.ts';
import { revoke } from '../session/machine.ts';
import { getHeader, type Reply, type RequestFrame } from '../wire/index.ts';

export const REVOCATIONS_PATH = '/rotor/revocations';

export async function handOverLogin(ctx: DispatchContext, frame: RequestFrame, token: string, note: Note, origin?: Origin): Promise<Reply> {
  const handOver = ctx.handOver;
  if (!handOver) throw new RotorError('ROTOR_E_HANDOVER_INVALID', 'this server takes no hand-overs');
  const claims = handOver.admit(token, getHeader(frame, 'Home'), ctx.now());
  note.user = claims.user;
  // Both servers on one store: the parent itself says whether it ended (a session id is 16 random bytes: no other session has it).
  if ((await ctx.store.loadSession(claims.parent))?.revoked) throw new RotorError('ROTOR_E_HANDOVER_REVOKED');
  const meta = { ...parseMetaBody(frame, ctx.config.session.maxMetaBytes), home: claims.issuer, parent: claims.parent };
  const binding = bindingOf(ctx, frame, addressKey(origin?.peer));
  if (!(await handOver.spend(claims))) throw new RotorError('ROTOR_E_HANDOVER_REUSED');
  let opened: Awaited<ReturnType<typeof openSession>> | undefined;
  try {
    opened = await openSession(ctx, claims.user, meta, undefined, binding);
    await handOver.linkChild(claims, opened.state.id, ctx.now());
  } catch (err) {
    // Nothing was handed out: the token is good again, and a session nobody can reach ends.
    await handOver.unspend(claims).catch(() => undefined);
    const now = ctx.now();
    if (opened) await ctx.store.commitSession(revoke(opened.state, 'deleted', now, now + ctx.revokedRetentionMs).state, opened.state.rev, []).catch(() => undefined);
    throw err;
  }
  note.session = opened.state.id;
  return opened.reply;
}

/** `GET /rotor/revocations`: the list as JSON with its `Signature`; not found on any carrier but HTTP, nor on a server without hand-over. */
export async function revocations(ctx: DispatchContext, note: Note, origin?: Origin): Promise<Reply> {
  if (!ctx.handOver || origin?.carrier !== 'http') return refused(note, 'ROTOR_E_NOT_FOUND');
  const { body, signature } = await ctx.handOver.document(ctx.now());
  return plainReply(200, [['Content-Type', JSON_TYPE], ['Signature', signature]], body);
}
