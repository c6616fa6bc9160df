import { revoke } from '../../session/machine.ts';
import type { RevokeReason } from '../../session/types.ts';
import type { ExchangeOperation } from '../exchange.ts';
import { plainReply, type DispatchContext } from '../context.ts';

/** `POST /rotor/logout` (200) and `DELETE /rotor/token` (202): end the session; every token of it is refused from now on. */
export function end(ctx: DispatchContext, reason: RevokeReason, status: number): ExchangeOperation {
  return {
    ending: true,
    perform: (admitted, _released, now) => ({
      kind: 'settle',
      state: revoke(admitted, reason, now, now + ctx.revokedRetentionMs).state,
      reply: plainReply(status, []),
    }),
  };
}
