import type { ExchangeOperation } from '../exchange.ts';
import { errorOutcome, JSON_TYPE, type DispatchContext } from '../context.ts';

/** `PUT /rotor/token`: merge `merge` into the session's metadata and answer the whole of it. */
export function meta(ctx: DispatchContext, merge: Record<string, unknown>): ExchangeOperation {
  return {
    perform(admitted) {
      const merged = { ...admitted.meta, ...merge };
      const json = JSON.stringify(merged);
      if (Buffer.byteLength(json) > ctx.config.session.maxMetaBytes) {
        return { kind: 'rotate', outcome: { ...errorOutcome('ROTOR_E_BAD_REQUEST'), tasks: [], meta: admitted.meta } };
      }
      return { kind: 'rotate', outcome: { status: 200, headers: [['Content-Type', JSON_TYPE]], body: Buffer.from(json), tasks: [], meta: merged } };
    },
  };
}
