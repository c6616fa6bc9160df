import { RotorError } from '../../errors.ts';
import type { RequestFrame, Reply } from '../../wire/index.ts';
import { parseMetaBody, type DispatchContext, type Note } from '../context.ts';
import { openSession } from './open-session.ts';

/** `POST /rotor/token`: a session without a login, holding only metadata (note 004), when the server allows it. */
export async function createToken(ctx: DispatchContext, frame: RequestFrame, note: Note): Promise<Reply> {
  if (!ctx.config.session.openTokenCreate) throw new RotorError('ROTOR_E_FORBIDDEN', 'token creation without login is disabled');
  const { reply, state } = await openSession(ctx, '', parseMetaBody(frame, ctx.config.session.maxMetaBytes));
  note.session = state.id;
  return reply;
}
