/**
 * The seat exchanges of spec §9 as dispatcher operations: each loads the pool and its seats
 * record, learns what it must of the sessions in it, lets the pure machine decide, and stores
 * the result by compare-and-set (again from the load when another node changed the record
 * first). The session's own rotation is the dispatcher's, as for every exchange.
 */
import { RotorError } from '../errors.ts';
import type { DispatchContext, Outcome } from '../server/context.ts';
import { errorOutcome, JSON_TYPE } from '../server/context.ts';
import type { ExchangeOperation } from '../server/exchange.ts';
import type { SessionState } from '../session/types.ts';
import type { Header } from '../wire/index.ts';
import { decideSeat, noSeats, overdueSessions, type Lives, type SeatAnswer, type SeatAskKind } from './machine.ts';
import type { PoolRecord, PoolSeats } from './types.ts';

export const SEATS_PREFIX = '/rotor/seats/';
/** What a pool name may look like (spec §9). */
export const POOL_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** The headers a seat reply carries; an application handler may not set them. */
export const SEAT_HEADERS = ['seat', 'seat-position', 'seat-expires'] as const;

/** The pool name of a /rotor/seats/ path; throws ROTOR_E_BAD_REQUEST before admission for one that cannot be a name. */
export function poolOf(path: string): string {
  const name = path.slice(SEATS_PREFIX.length);
  if (!POOL_NAME.test(name)) throw new RotorError('ROTOR_E_BAD_REQUEST', 'not a pool name');
  return name;
}

/**
 * A session's last sign of life as its record shows it, null when it has ended, or undefined
 * when the record cannot tell (the pool's own record then decides). Every exchange that rotates
 * re-issues the token with a fresh lifetime, so the newest token's issue time (its expiry less
 * the lifetime, to the second) is when the session was last heard from. A never-expiring token
 * tells nothing; after `tokenTtlMinutes` was changed, a session's newest token was issued with
 * the old lifetime until it rotates, which skews this by the difference (never past now).
 */
export function lastLife(ctx: DispatchContext, state: SessionState | undefined, now: number): number | null | undefined {
  if (!state || state.revoked) return null;
  // A metered session knows its last exchange, and keeps its record past its token's expiry.
  if (state.quota !== null) return state.quota.tokenExpiresAt !== null && state.quota.tokenExpiresAt <= now ? null : Math.min(state.quota.lastAt, now);
  if (state.expiresAt === null) return undefined;
  if (state.expiresAt <= now) return null;
  return Math.min(state.expiresAt - ctx.config.session.tokenTtlMinutes * 60_000, now);
}

/** take (POST), give (DELETE) or look (GET) in the pool `name`, for the session being admitted. */
export function seatOperation(ctx: DispatchContext, kind: SeatAskKind, name: string): ExchangeOperation {
  return {
    async perform(admitted, _released, now) {
      const pool = await ctx.store.loadPool(name);
      const base = { tasks: [], meta: admitted.meta };
      if (!pool) return { kind: 'rotate', outcome: { ...base, ...errorOutcome('ROTOR_E_POOL_UNKNOWN') } };
      // Its own last sign of life before this ask is in the record just admitted: no store read.
      const life = lastLife(ctx, admitted, now);
      const { answer, seats } = await settleSeats(ctx, pool, { kind, session: admitted.id, user: admitted.user, life }, now);
      return { kind: 'rotate', outcome: { ...base, ...seatReply(pool, seats, answer, kind) } };
    },
  };
}

/** An ask, with what the asking session's own record says of its last sign of life before it (null: ended). */
interface Ask {
  kind: SeatAskKind;
  session: string;
  user: string;
  life: number | null | undefined;
}

/**
 * Decide and store one ask. Within this process one pool's asks run one at a time (under the
 * session's lock: always session, then pool, so no two wait on each other), so only other nodes
 * make a compare-and-set fail; it is retried from the load, and past the retries it is
 * ROTOR_E_CONFLICT (nothing changed: the client asks again with the same token).
 */
function settleSeats(ctx: DispatchContext, pool: PoolRecord, ask: Ask, now: number): Promise<{ answer: SeatAnswer; seats: PoolSeats }> {
  return ctx.locks.run(`\0pool\0${pool.name}`, () => settleSeatsNow(ctx, pool, ask, now));
}

async function settleSeatsNow(ctx: DispatchContext, pool: PoolRecord, ask: Ask, now: number): Promise<{ answer: SeatAnswer; seats: PoolSeats }> {
  for (let attempt = 0; attempt < ctx.config.session.maxCommitRetries; attempt++) {
    const seats = (await ctx.store.loadSeats(pool.name)) ?? noSeats(pool.name);
    const decision = decideSeat(pool, seats, ask, now, await livesOf(ctx, pool, seats, ask, now));
    if (!decision.changed || (await ctx.store.commitSeats(decision.seats, seats.rev))) {
      return { answer: decision.answer, seats: decision.changed ? { ...decision.seats, rev: seats.rev + 1 } : seats };
    }
  }
  throw new RotorError('ROTOR_E_CONFLICT', 'the seat pool changed under every attempt');
}

/**
 * The sessions the record counts as silent: what their own records say of them (a few store
 * reads, only for those; the asking session's own is known already).
 */
async function livesOf(ctx: DispatchContext, pool: PoolRecord, seats: PoolSeats, ask: Ask, now: number): Promise<Lives> {
  const lives = new Map<string, number | null>();
  const learned = (session: string, life: number | null | undefined) => {
    if (life !== undefined) lives.set(session, life);
  };
  learned(ask.session, ask.life);
  for (const session of overdueSessions(pool, seats, now)) {
    if (session !== ask.session) learned(session, lastLife(ctx, await ctx.store.loadSession(session), now));
  }
  return lives;
}

function seatReply(pool: PoolRecord, seats: PoolSeats, answer: SeatAnswer, kind: SeatAskKind): Omit<Outcome, 'tasks' | 'meta'> {
  const seconds = (ms: number) => String(Math.max(1, Math.ceil(ms / 1000)));
  let reply: Omit<Outcome, 'tasks' | 'meta'>;
  switch (answer.seat) {
    case 'granted':
      reply = { status: 200, headers: [['Seat', 'granted'], ['Seat-Expires', String(Math.floor(answer.expiresInMs / 1000))]] };
      break;
    case 'queued':
      reply = { status: kind === 'look' ? 200 : 202, headers: [['Seat', 'queued'], ['Seat-Position', String(answer.position)], ['Wait-for', seconds(answer.waitMs)]] };
      break;
    case 'none':
      reply = { status: 200, headers: [['Seat', 'none']] };
      break;
    case 'refused': {
      const refusal = errorOutcome(answer.code);
      return { ...refusal, headers: [['Wait-for', seconds(answer.waitMs)]] };
    }
  }
  if (kind !== 'look') return reply;
  const position = answer.seat === 'queued' ? answer.position : null;
  const body = { pool: pool.name, seats: pool.seats, held: seats.holders.length, queued: seats.queue.length, seat: answer.seat, position };
  const headers: Header[] = [...reply.headers, ['Content-Type', JSON_TYPE]];
  return { ...reply, headers, body: Buffer.from(JSON.stringify(body)) };
}

/**
 * A session ended (logout, delete, revocation): give back every seat and place it has, at once.
 * Best effort — a failure is logged, and the seat then goes as a silent one's does.
 */
export async function releaseSessionSeats(ctx: DispatchContext, session: string, now: number): Promise<void> {
  try {
    for (const pool of await ctx.store.listPools()) {
      const seats = await ctx.store.loadSeats(pool.name);
      if (!seats || ![...seats.holders, ...seats.queue].some((e) => e.session === session)) continue;
      await settleSeats(ctx, pool, { kind: 'give', session, user: '', life: null }, now);
    }
  } catch (err) {
    ctx.log.warn({ err, session }, 'giving back the seats of an ended session failed; they go when its heartbeat runs out');
  }
}
