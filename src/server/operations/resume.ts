import type { ExchangeOperation } from '../exchange.ts';

/** `POST /rotor/resume`: a new token and nothing else (a client picking its session up again). */
export const resume: ExchangeOperation = {
  perform: (admitted) => ({ kind: 'rotate', outcome: { status: 200, headers: [], tasks: [], meta: admitted.meta } }),
};
