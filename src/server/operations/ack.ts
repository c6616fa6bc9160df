import type { ExchangeOperation } from '../exchange.ts';
import { plainReply } from '../context.ts';

/** `POST /rotor/ack`: acknowledge the newest token (releasing what its exchange deferred) without a new one. */
export const ack: ExchangeOperation = {
  acknowledging: true,
  perform: (admitted, _released, _now) => ({ kind: 'settle', state: admitted, reply: plainReply(200, []) }),
};
