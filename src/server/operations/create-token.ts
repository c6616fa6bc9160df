import { RotorError } from '../../errors.ts';
import { addressKey, type Origin } from '../../net/origin.ts';
import type { RequestFrame, Reply } from '../../wire/index.ts';
import { bindingOf, parseMetaBody, type DispatchContext, type Note } from '../context.ts';
import { openSession } from './open-session.ts';

/** `POST /rotor/token`: a session without a login, holding only metadata (note 004), when the server allows it. */
export async function createToken(ctx: DispatchContext, frame: RequestFrame, note: Note, origin?: Origin): Promise<Reply> {
  if (!ctx.config.session.openTokenCreate) throw new RotorError('ROTOR_E_FORBIDDEN', 'token creation without login is disabled');
  // Bound like a login's (spec §2): to the Client-Info and address of the request that made it.
  const binding = bindingOf(ctx, frame, addressKey(origin?.peer));
  const { reply, state } = await openSession(ctx, '', parseMetaBody(frame, ctx.config.session.maxMetaBytes), undefined, binding);
  note.session = state.id;
  return reply;
}
