/**
 * The seat machine: pure and synchronous. `(pool, seats, ask, now, lives) → (seats, answer)`.
 * No I/O and no clock: the operation loads the record, tells the machine what it learned of the
 * sessions involved, and stores the result by compare-and-set. The rules are spec.md §9:
 *
 *  - first, whoever is past its time goes: a holder or waiter silent for longer than the
 *    heartbeat (its newest sign of life is the later of the record's and the session's own), a
 *    holder past the longest hold, and every entry of a session that has ended;
 *  - take: a holder stays (a heartbeat); otherwise a seat is granted when one is free and no
 *    eligible waiter is ahead — the oldest waiter whose user is below the per-user cap is served
 *    first, so a user at its cap holds up nobody; otherwise the session waits in line (keeping
 *    its place if it had one), unless the line or the user's share of it is full;
 *  - give: the seat or the place is given back;
 *  - look: nothing changes (the expired are left for the next change to drop).
 * Every state the machine returns has holders ≤ seats and each session at most once.
 */
import type { PoolRecord, PoolSeats, SeatEntry } from './types.ts';

export type SeatAskKind = 'take' | 'give' | 'look';

export interface SeatAsk {
  readonly kind: SeatAskKind;
  readonly session: string;
  readonly user: string;
}

/**
 * What the operation learned of the sessions in the record: for a session id, its last sign
 * of life (ms), or null when it has ended (logged out, revoked, expired, gone). Sessions it did
 * not look up are taken at the record's word.
 */
export type Lives = ReadonlyMap<string, number | null>;

export type SeatAnswer =
  | { readonly seat: 'granted'; readonly expiresInMs: number }
  | { readonly seat: 'queued'; readonly position: number; readonly waitMs: number }
  | { readonly seat: 'none' }
  | { readonly seat: 'refused'; readonly code: 'ROTOR_E_QUEUE_FULL'; readonly waitMs: number };

export interface SeatDecision {
  readonly seats: PoolSeats;
  /** Whether `seats` differs from the input (a store write is needed). */
  readonly changed: boolean;
  readonly answer: SeatAnswer;
}

/** An empty record for a pool nobody has asked yet. */
export function noSeats(pool: string): PoolSeats {
  return { pool, rev: 0, holders: [], queue: [], holdsEnded: 0, heldMsTotal: 0 };
}

/** The sessions whose standing depends on more than the record knows: entries past their heartbeat by the record's reckoning. */
export function overdueSessions(pool: PoolRecord, seats: PoolSeats, now: number): string[] {
  const overdue: string[] = [];
  for (const entry of [...seats.holders, ...seats.queue]) if (now - entry.seenAt > pool.heartbeatMs) overdue.push(entry.session);
  return overdue;
}

export function decideSeat(pool: PoolRecord, input: PoolSeats, ask: SeatAsk, now: number, lives: Lives = new Map()): SeatDecision {
  let changed = false;
  let holdsEnded = input.holdsEnded;
  let heldMsTotal = input.heldMsTotal;
  const refreshed = (entry: SeatEntry): SeatEntry | undefined => {
    const life = lives.get(entry.session);
    if (life === null) return undefined;
    const seenAt = life !== undefined && life > entry.seenAt ? life : entry.seenAt;
    if (now - seenAt > pool.heartbeatMs) return undefined;
    return seenAt === entry.seenAt ? entry : { ...entry, seenAt };
  };
  const holders: SeatEntry[] = [];
  for (const holder of input.holders) {
    const kept = refreshed(holder);
    const overHold = pool.maxHoldMs !== null && now - holder.since >= pool.maxHoldMs;
    if (kept && !overHold) {
      holders.push(kept);
      if (kept !== holder) changed = true;
    } else {
      changed = true;
      holdsEnded++;
      heldMsTotal += Math.max(0, now - holder.since);
    }
  }
  const queue: SeatEntry[] = [];
  for (const waiter of input.queue) {
    // A place in line is kept by asking the pool again, not by the session's other exchanges:
    // else a waiter whose turn has come, busy elsewhere, would hold a free seat from everyone
    // behind it for as long as it used its session. (An ended session leaves the line at once.)
    const kept = lives.get(waiter.session) === null || now - waiter.seenAt > pool.heartbeatMs ? undefined : waiter;
    if (kept) queue.push(kept);
    if (kept !== waiter) changed = true;
  }

  const settle = (answer: SeatAnswer): SeatDecision => ({
    seats: changed ? { pool: input.pool, rev: input.rev, holders, queue, holdsEnded, heldMsTotal } : input,
    changed,
    answer,
  });
  const me = (entry: SeatEntry) => entry.session === ask.session;
  const heldBy = (user: string) => holders.filter((h) => h.user === user).length;
  const underCap = (user: string) => pool.perUser === 0 || heldBy(user) < pool.perUser;
  const grantedAnswer = (holder: SeatEntry): SeatAnswer => {
    const holdLeft = pool.maxHoldMs === null ? Infinity : pool.maxHoldMs - (now - holder.since);
    return { seat: 'granted', expiresInMs: Math.max(0, Math.min(pool.heartbeatMs - (now - holder.seenAt), holdLeft)) };
  };
  const queuedAnswer = (): SeatAnswer => {
    const at = queue.findIndex(me);
    // Seats free for others are not free for a waiter whose user is at its cap.
    const free = underCap(ask.user) ? pool.seats - holders.length : 0;
    const position = at + 1;
    const averageHold = holdsEnded > 0 ? heldMsTotal / holdsEnded : pool.heartbeatMs;
    // Waiters ahead that free seats will serve first, then one average hold per round of seats.
    const rounds = Math.max(0, Math.ceil((position - Math.max(free, 0)) / Math.max(pool.seats, 1)));
    const waitMs = Math.min(Math.max(1000, rounds * averageHold), pool.heartbeatMs / 2);
    return { seat: 'queued', position, waitMs };
  };

  const holding = holders.findIndex(me);
  const waiting = queue.findIndex(me);

  if (ask.kind === 'give') {
    if (holding !== -1) {
      const [given] = holders.splice(holding, 1);
      holdsEnded++;
      heldMsTotal += Math.max(0, now - given.since);
      changed = true;
    }
    if (waiting !== -1) {
      queue.splice(waiting, 1);
      changed = true;
    }
    return settle({ seat: 'none' });
  }

  if (ask.kind === 'look') {
    // Answered from the pruned view; the record is left as it is.
    const answer: SeatAnswer = holding !== -1 ? grantedAnswer(holders[holding]) : waiting !== -1 ? queuedAnswer() : { seat: 'none' };
    return { seats: input, changed: false, answer };
  }

  // take
  if (holding !== -1) {
    const holder = holders[holding];
    if (holder.seenAt !== now) {
      holders[holding] = { ...holder, seenAt: now };
      changed = true;
    }
    return settle(grantedAnswer(holders[holding]));
  }
  const free = pool.seats - holders.length;
  if (free > 0 && underCap(ask.user)) {
    // Eligible waiters ahead (users below their cap) are served first: this session is granted
    // only while there is a free seat for each of them and one more for it.
    const eligibleAhead = queue.filter((w, i) => (waiting === -1 || i < waiting) && underCap(w.user)).length;
    if (eligibleAhead < free) {
      if (waiting !== -1) queue.splice(waiting, 1);
      const holder: SeatEntry = { session: ask.session, user: ask.user, since: now, seenAt: now };
      holders.push(holder);
      changed = true;
      return settle(grantedAnswer(holder));
    }
  }
  if (waiting !== -1) {
    const waiter = queue[waiting];
    if (waiter.seenAt !== now) {
      queue[waiting] = { ...waiter, seenAt: now };
      changed = true;
    }
    return settle(queuedAnswer());
  }
  const mine = queue.filter((w) => w.user === ask.user).length;
  if (queue.length >= pool.queueLimit || mine >= pool.perUserQueueLimit) {
    const averageHold = holdsEnded > 0 ? heldMsTotal / holdsEnded : pool.heartbeatMs;
    return settle({ seat: 'refused', code: 'ROTOR_E_QUEUE_FULL', waitMs: Math.min(Math.max(1000, averageHold), pool.heartbeatMs / 2) });
  }
  queue.push({ session: ask.session, user: ask.user, since: now, seenAt: now });
  changed = true;
  return settle(queuedAnswer());
}
