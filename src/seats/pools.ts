/** Defining seat pools (`rotor pool add`): the checked record an operator's options make. */
import { POOL_NAME } from './operations.ts';
import type { PoolRecord } from './types.ts';

export interface PoolOptions {
  seats: number;
  perUser?: number | undefined;
  heartbeatMs?: number | undefined;
  maxHoldMs?: number | null | undefined;
  queueLimit?: number | undefined;
  perUserQueueLimit?: number | undefined;
}

export const POOL_DEFAULTS = Object.freeze({ perUser: 0, heartbeatMs: 5 * 60_000, maxHoldMs: null, queueLimit: 100, perUserQueueLimit: 10 });

/** A pool record from an operator's options; throws a message that says what is wrong. */
export function poolRecord(name: string, options: PoolOptions, now: number): PoolRecord {
  if (!POOL_NAME.test(name)) throw new Error(`a pool name is 1–64 of A–Z a–z 0–9 _ . - (got ${JSON.stringify(name)})`);
  const whole = (what: string, value: number, min: number, max: number) => {
    if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${what} must be a whole number from ${min} to ${max}, got ${value}`);
    return value;
  };
  const heartbeatMs = whole('--heartbeat (ms)', options.heartbeatMs ?? POOL_DEFAULTS.heartbeatMs, 1000, 24 * 3_600_000);
  const maxHold = options.maxHoldMs ?? POOL_DEFAULTS.maxHoldMs;
  return {
    name,
    seats: whole('--seats', options.seats, 1, 1_000_000),
    perUser: whole('--per-user', options.perUser ?? POOL_DEFAULTS.perUser, 0, 1_000_000),
    heartbeatMs,
    maxHoldMs: maxHold === null ? null : whole('--max-hold (ms)', maxHold, heartbeatMs, 365 * 24 * 3_600_000),
    queueLimit: whole('--queue-limit', options.queueLimit ?? POOL_DEFAULTS.queueLimit, 0, 100_000),
    perUserQueueLimit: whole('--per-user-queue-limit', options.perUserQueueLimit ?? POOL_DEFAULTS.perUserQueueLimit, 0, 100_000),
    createdAt: now,
  };
}

/** One line per pool for `rotor pool list`. */
export function describePool(pool: PoolRecord, held?: number, queued?: number): string {
  const parts = [`${pool.seats} seat${pool.seats === 1 ? "" : "s"}`];
  if (held !== undefined) parts.push(`${held} held`, `${queued ?? 0} waiting`);
  if (pool.perUser > 0) parts.push(`at most ${pool.perUser} per user`);
  parts.push(`heartbeat ${pool.heartbeatMs / 1000} s`);
  if (pool.maxHoldMs !== null) parts.push(`longest hold ${pool.maxHoldMs / 1000} s`);
  parts.push(`queue ${pool.queueLimit} (${pool.perUserQueueLimit} per user)`);
  return `${pool.name}: ${parts.join(', ')}`;
}
