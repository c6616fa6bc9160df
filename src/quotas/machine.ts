/**
 * The quota machine: pure and synchronous. Limits are derived once, when a code opens a
 * session (template + node policy + what the code has spent); each exchange then only adds
 * and compares (spec §10).
 *
 *  - A request is refused — the session ends — when a deadline has passed, the in-use time is
 *    spent, the replies so far reached the bytes-out cap, or this request's bytes would pass the
 *    bytes-in or bytes-total cap. So bytes-in is never passed, and bytes-out and bytes-total are
 *    passed by at most the one reply that crossed them.
 *  - In use: from each exchange to the next, counted up to `idleGapMs` per gap.
 */
import type { CodeRecord, CodeStatus, EndReason, QuotaLimit, QuotaUse, SessionQuota, TemplateRecord } from './types.ts';

export const NO_USE: QuotaUse = Object.freeze({ bytesIn: 0, bytesOut: 0, usageMs: 0 });

/** The limits of a new connection of `code` starting at `now`, with the code's counters so far. */
export function deriveQuota(template: TemplateRecord, code: CodeRecord, now: number, idleGapMs: number, tokenExpiresAt: number | null): SessionQuota {
  let deadline: number | null = null;
  let deadlineLimit: QuotaLimit | null = null;
  const consider = (at: number | null, limit: QuotaLimit) => {
    if (at !== null && (deadline === null || at < deadline)) {
      deadline = at;
      deadlineLimit = limit;
    }
  };
  consider(template.wallMs === null ? null : (code.firstUsedAt ?? now) + template.wallMs, 'wall-time');
  consider(template.ageMs === null ? null : code.issuedAt + template.ageMs, 'age');
  const codeEndsAt: number | null = deadline;
  consider(template.connectionMs === null ? null : now + template.connectionMs, 'connection-time');
  return {
    code: code.id,
    template: template.name,
    maxBytesIn: template.maxBytesIn,
    maxBytesOut: template.maxBytesOut,
    maxBytesTotal: template.maxBytesTotal,
    maxUsageMs: template.usageMs,
    deadline,
    deadlineLimit,
    codeEndsAt,
    idleGapMs,
    bytesIn: code.used.bytesIn,
    bytesOut: code.used.bytesOut,
    usageMs: code.used.usageMs,
    lastAt: now,
    tokenExpiresAt,
    endedBy: null,
  };
}

/** The limit `quota` has reached at `now` before any more bytes (a byte more would pass it), or undefined. */
export function limitReached(quota: SessionQuota, now: number): QuotaLimit | undefined {
  return meterLimit(quota, 1, now);
}

/** In use between two exchanges: the gap, up to the idle gap. */
function usageAt(quota: SessionQuota, now: number): number {
  const gap = now - quota.lastAt;
  return quota.usageMs + (gap <= 0 ? 0 : gap < quota.idleGapMs ? gap : quota.idleGapMs);
}

/**
 * The limit that refuses a request of `requestBytes` at `now`, or undefined: it may go ahead.
 * Plain comparisons, nothing allocated — this runs on every metered exchange.
 */
export function meterLimit(quota: SessionQuota, requestBytes: number, now: number): QuotaLimit | undefined {
  const { bytesIn, bytesOut, maxBytesIn, maxBytesTotal } = quota;
  if (quota.deadline !== null && now >= quota.deadline) return quota.deadlineLimit ?? undefined;
  if (quota.maxUsageMs !== null && usageAt(quota, now) >= quota.maxUsageMs) return 'usage-time';
  if (maxBytesIn !== null && bytesIn + requestBytes > maxBytesIn) return 'bytes-in';
  if (quota.maxBytesOut !== null && bytesOut >= quota.maxBytesOut) return 'bytes-out';
  if (maxBytesTotal !== null && bytesIn + bytesOut + requestBytes > maxBytesTotal) return 'bytes-total';
  return undefined;
}

/** The counters after an exchange that went ahead at `now`: its request, its reply, the time in use; its token expiring at `tokenExpiresAt`. */
export function charged(quota: SessionQuota, requestBytes: number, replyBytes: number, now: number, tokenExpiresAt: number | null): SessionQuota {
  return withCounters(quota, quota.bytesIn + requestBytes, quota.bytesOut + replyBytes, usageAt(quota, now), now > quota.lastAt ? now : quota.lastAt, quota.endedBy, tokenExpiresAt);
}

/** The counters of a session `limit` ended at `now`: the time spent counted, the refused request not. */
export function endedAt(quota: SessionQuota, limit: QuotaLimit, now: number): SessionQuota {
  return withCounters(quota, quota.bytesIn, quota.bytesOut, usageAt(quota, now), now > quota.lastAt ? now : quota.lastAt, limit);
}

/** A copy with new counters, field by field (one shape for every quota record, as sessionWith does for sessions). */
function withCounters(
  quota: SessionQuota,
  bytesIn: number,
  bytesOut: number,
  usageMs: number,
  lastAt: number,
  endedBy: QuotaLimit | null,
  tokenExpiresAt = quota.tokenExpiresAt,
): SessionQuota {
  return {
    code: quota.code,
    template: quota.template,
    maxBytesIn: quota.maxBytesIn,
    maxBytesOut: quota.maxBytesOut,
    maxBytesTotal: quota.maxBytesTotal,
    maxUsageMs: quota.maxUsageMs,
    deadline: quota.deadline,
    deadlineLimit: quota.deadlineLimit,
    codeEndsAt: quota.codeEndsAt,
    idleGapMs: quota.idleGapMs,
    bytesIn,
    bytesOut,
    usageMs,
    lastAt,
    tokenExpiresAt,
    endedBy,
  };
}

/**
 * When the store may forget a metered session (its expiresAt): once its code has ended on the
 * clock and its token has expired, plus `retentionMs` so a late request still hears which limit
 * it was; never before — until the connection is folded into its code, its counters are the
 * code's.
 */
export function keepUntil(quota: SessionQuota, retentionMs: number): number | null {
  if (quota.codeEndsAt === null || quota.tokenExpiresAt === null) return null;
  return Math.max(quota.codeEndsAt, quota.tokenExpiresAt) + retentionMs;
}

/** What is left: null for no cap; never below 0. */
export interface Remaining {
  bytesIn: number | null;
  bytesOut: number | null;
  bytesTotal: number | null;
  usageMs: number | null;
  /** ms until the earliest deadline */
  timeMs: number | null;
}

export function remaining(quota: SessionQuota, now: number): Remaining {
  const left = (max: number | null, used: number) => (max === null ? null : Math.max(0, max - used));
  return {
    bytesIn: left(quota.maxBytesIn, quota.bytesIn),
    bytesOut: left(quota.maxBytesOut, quota.bytesOut),
    bytesTotal: left(quota.maxBytesTotal, quota.bytesIn + quota.bytesOut),
    usageMs: left(quota.maxUsageMs, quota.usageMs),
    timeMs: quota.deadline === null ? null : Math.max(0, quota.deadline - now),
  };
}

/** The limits that end a code for good (a reusable code may connect again after its connection-time). */
const CODE_ENDING: ReadonlySet<EndReason> = new Set<EndReason>(['bytes-in', 'bytes-out', 'bytes-total', 'usage-time']);

/** Whether `reason` is a cap that, reached, spends a code for good (not a connection's time, not the clock). */
export function isSpendingCap(reason: EndReason | undefined): reason is QuotaLimit {
  return reason !== undefined && CODE_ENDING.has(reason);
}
const CODE_EXPIRING: ReadonlySet<EndReason> = new Set<EndReason>(['wall-time', 'age']);

/** The code after its live connection ended for `reason` with counters `used`. */
export function endConnection(code: CodeRecord, template: TemplateRecord | undefined, used: QuotaUse, reason: EndReason, now: number): CodeRecord {
  let status: CodeStatus = code.status;
  if (reason === 'revoked') status = 'revoked';
  else if (CODE_EXPIRING.has(reason)) status = 'expired';
  else if (isSpendingCap(reason) || !template?.reusable) status = 'exhausted';
  return { ...code, status, used, session: null, lastEnd: { at: now, reason } };
}

/**
 * The code's status at `now`, as a login or a listing sees it: the stored one, or expired once
 * a wall-clock or age deadline has passed, or exhausted once a cap is used up.
 */
export function codeStatus(code: CodeRecord, template: TemplateRecord | undefined, now: number): CodeStatus {
  if (code.status !== 'unused' && code.status !== 'active') return code.status;
  if (!template) return code.status;
  if (template.ageMs !== null && now >= code.issuedAt + template.ageMs) return 'expired';
  if (template.wallMs !== null && code.firstUsedAt !== null && now >= code.firstUsedAt + template.wallMs) return 'expired';
  return spentCap(code, template) !== undefined ? 'exhausted' : code.status;
}

/** The cap of `template` that what `code` spent has used up, or undefined. */
export function spentCap(code: CodeRecord, template: TemplateRecord): QuotaLimit | undefined {
  const { bytesIn, bytesOut, usageMs } = code.used;
  if (template.maxBytesIn !== null && bytesIn >= template.maxBytesIn) return 'bytes-in';
  if (template.maxBytesOut !== null && bytesOut >= template.maxBytesOut) return 'bytes-out';
  if (template.maxBytesTotal !== null && bytesIn + bytesOut >= template.maxBytesTotal) return 'bytes-total';
  if (template.usageMs !== null && usageMs >= template.usageMs) return 'usage-time';
  return undefined;
}

export function useOf(quota: SessionQuota): QuotaUse {
  return { bytesIn: quota.bytesIn, bytesOut: quota.bytesOut, usageMs: quota.usageMs };
}
