/** `GET /rotor/quota`: what the session's access code has spent and has left (spec §10), as a token exchange. */
import { JSON_TYPE } from '../server/context.ts';
import type { ExchangeOperation } from '../server/exchange.ts';
import { charged, remaining } from './machine.ts';
import type { SessionQuota } from './types.ts';

/** The JSON a quota status shows (the login page shows the same). */
export function quotaStatus(quota: SessionQuota | null, now: number): Record<string, unknown> {
  if (quota === null) return { metered: false };
  return {
    metered: true,
    template: quota.template,
    used: { bytesIn: quota.bytesIn, bytesOut: quota.bytesOut, usageSeconds: Math.floor(quota.usageMs / 1000) },
    limits: {
      bytesIn: quota.maxBytesIn,
      bytesOut: quota.maxBytesOut,
      bytesTotal: quota.maxBytesTotal,
      usageSeconds: quota.maxUsageMs === null ? null : Math.floor(quota.maxUsageMs / 1000),
      until: quota.deadline === null ? null : new Date(quota.deadline).toISOString(),
      untilLimit: quota.deadlineLimit,
    },
    remaining: secondsOf(remaining(quota, now)),
  };
}

function secondsOf(left: ReturnType<typeof remaining>): Record<string, number | null> {
  const seconds = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000));
  return { bytesIn: left.bytesIn, bytesOut: left.bytesOut, bytesTotal: left.bytesTotal, usageSeconds: seconds(left.usageMs), seconds: seconds(left.timeMs) };
}

export const quotaOperation: ExchangeOperation = {
  perform(admitted, _released, now, requestBytes) {
    // The counters as this exchange leaves them, but for its own reply (which is not made yet).
    const quota = admitted.quota === null ? null : charged(admitted.quota, requestBytes, 0, now, admitted.quota.tokenExpiresAt);
    const body = Buffer.from(JSON.stringify(quotaStatus(quota, now)));
    return { kind: 'rotate', outcome: { status: 200, headers: [['Content-Type', JSON_TYPE]], body, tasks: [], meta: admitted.meta } };
  },
};
