/**
 * The seat machine against a model (fast-check commands): clients of a few users take, give
 * back, look, show life, die (time passes) and end, with a fake clock. The model knows only
 * what the world knows — who is alive, who ended, when each last showed life — and after every
 * step the machine's record must agree with it: never more holders than seats, per-user caps
 * held, nobody held or queued twice, the dead and the ended gone, first come first served, no
 * free seat refused to a client nobody eligible waits ahead of, and the queue limits kept.
 */
import t from 'tap';
import fc from 'fast-check';
import { decideSeat, noSeats, type SeatAnswer } from '../../src/seats/machine.ts';
import type { PoolRecord, PoolSeats } from '../../src/seats/types.ts';

const CLIENTS = [
  { session: 's1', user: 'ana' },
  { session: 's2', user: 'ana' },
  { session: 's3', user: 'bo' },
  { session: 's4', user: 'bo' },
  { session: 's5', user: 'cy' },
  { session: 's6', user: 'cy' },
];

interface World {
  pool: PoolRecord;
  now: number;
  seats: PoolSeats;
  /** The model: each session's last sign of life, and which have ended. */
  lastLife: Map<string, number>;
  /** When each last asked for a seat (take): what keeps a place in line. */
  lastTake: Map<string, number>;
  ended: Set<string>;
}

function lives(w: World): Map<string, number | null> {
  const out = new Map<string, number | null>();
  for (const c of CLIENTS) out.set(c.session, w.ended.has(c.session) ? null : (w.lastLife.get(c.session) ?? -Infinity));
  return out;
}

/** Dead by the model's reckoning: ended, or silent past the heartbeat — for a waiter, not asking again within it. */
function dead(w: World, session: string, waiting = false): boolean {
  const last = (waiting ? w.lastTake : w.lastLife).get(session) ?? -Infinity;
  return w.ended.has(session) || w.now - last > w.pool.heartbeatMs;
}

function checkInvariants(w: World): void {
  const { holders, queue } = w.seats;
  if (holders.length > w.pool.seats) throw new Error(`${holders.length} holders of ${w.pool.seats} seats`);
  const all = [...holders, ...queue].map((e) => e.session);
  if (new Set(all).size !== all.length) throw new Error(`a session twice: ${all.join()}`);
  if (w.pool.perUser > 0) {
    for (const user of new Set(holders.map((h) => h.user))) {
      if (holders.filter((h) => h.user === user).length > w.pool.perUser) throw new Error(`${user} over the per-user cap`);
    }
  }
  if (queue.length > w.pool.queueLimit) throw new Error('queue over its limit');
  for (const user of new Set(queue.map((q) => q.user))) {
    if (queue.filter((q) => q.user === user).length > w.pool.perUserQueueLimit) throw new Error(`${user} over its share of the queue`);
  }
}

type Command = fc.Command<World, World>;

class Ask implements Command {
  constructor(
    readonly kind: 'take' | 'give' | 'look',
    readonly client: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    const { session, user } = CLIENTS[this.client];
    if (w.ended.has(session)) return; // an ended session cannot ask: its token is refused before the pool
    w.lastLife.set(session, w.now); // asking is itself a sign of life
    const before = w.seats;
    // What the model knew before this ask: a take keeps a place in line from now on, not for this decision.
    const takes = new Map(w.lastTake);
    if (this.kind === 'take') w.lastTake.set(session, w.now);
    const decision = decideSeat(w.pool, before, { kind: this.kind, session, user }, w.now, lives(w));
    const after = decision.seats;
    if (this.kind === 'look') {
      if (decision.changed || after !== before) throw new Error('a look changed the record');
    } else {
      if (decision.changed !== (after !== before)) throw new Error('changed does not say whether the record changed');
      for (const e of after.holders) if (dead(w, e.session)) throw new Error(`holder ${e.session} is dead but still in the pool`);
      for (const e of after.queue) if (e.session !== session && dead(w, e.session, true)) throw new Error(`waiter ${e.session} is dead but still in line`);
      w.seats = after;
    }
    checkInvariants(w);
    this.checkAnswer(w, before, decision.answer, session, user, takes);
  }

  private checkAnswer(w: World, before: PoolSeats, answer: SeatAnswer, session: string, user: string, takes: Map<string, number>): void {
    const { holders, queue } = w.seats;
    const holds = holders.some((h) => h.session === session);
    const at = queue.findIndex((q) => q.session === session);
    if (this.kind === 'give') {
      if (answer.seat !== 'none' || holds || at !== -1) throw new Error('given back but still there');
      return;
    }
    if (this.kind === 'look') {
      const view = answer.seat;
      const heldBefore = before.holders.some((h) => h.session === session);
      const queuedBefore = before.queue.some((q) => q.session === session);
      if (view === 'granted' && !heldBefore) throw new Error('look says granted for a non-holder');
      if (view === 'queued' && !queuedBefore) throw new Error('look says queued for a non-waiter');
      return;
    }
    if (answer.seat === 'granted' && !holds) throw new Error('granted but not a holder');
    if (answer.seat === 'queued' && (at === -1 || answer.position !== at + 1)) throw new Error(`queued at ${answer.position}, in line at ${at + 1}`);
    if (answer.seat === 'refused' && (holds || at !== -1)) throw new Error('refused but in the pool');
    if (answer.seat === 'none') throw new Error('a take answered none');
    // The living view of the record before this ask, as the model sees it.
    const living = (list: readonly { session: string; user: string; since: number }[], holding: boolean) =>
      list.filter((e) =>
        holding
          ? !dead(w, e.session) && (w.pool.maxHoldMs === null || w.now - e.since < w.pool.maxHoldMs)
          : !w.ended.has(e.session) && w.now - (takes.get(e.session) ?? -Infinity) <= w.pool.heartbeatMs,
      );
    const holdersBefore = living(before.holders, true);
    const queueBefore = living(before.queue, false);
    const wasHolder = holdersBefore.some((h) => h.session === session);
    if (wasHolder) {
      if (answer.seat !== 'granted') throw new Error('a holder lost its seat on a heartbeat');
      return;
    }
    const free = w.pool.seats - holdersBefore.length;
    const underCap = (u: string) => w.pool.perUser === 0 || holdersBefore.filter((h) => h.user === u).length < w.pool.perUser;
    const myPlace = queueBefore.findIndex((q) => q.session === session);
    const eligibleAhead = queueBefore.filter((q, i) => (myPlace === -1 || i < myPlace) && q.session !== session && underCap(q.user)).length;
    const shouldGrant = free > 0 && underCap(user) && eligibleAhead < free;
    if (shouldGrant !== (answer.seat === 'granted')) {
      throw new Error(`free ${free}, eligible ahead ${eligibleAhead}, under cap ${underCap(user)}: expected ${shouldGrant ? 'granted' : 'not granted'}, got ${answer.seat}`);
    }
    if (!shouldGrant && myPlace === -1) {
      const full = queueBefore.length >= w.pool.queueLimit || queueBefore.filter((q) => q.user === user).length >= w.pool.perUserQueueLimit;
      if (full !== (answer.seat === 'refused')) throw new Error(`queue full ${full}, got ${answer.seat}`);
    }
  }
  toString(): string {
    return `${this.kind}(${CLIENTS[this.client].session})`;
  }
}

class Life implements Command {
  constructor(readonly client: number) {}
  check = () => true;
  run(_m: World, w: World): void {
    const { session } = CLIENTS[this.client];
    if (!w.ended.has(session)) w.lastLife.set(session, w.now);
  }
  toString = () => `life(${CLIENTS[this.client].session})`;
}

class Advance implements Command {
  constructor(readonly ms: number) {}
  check = () => true;
  run(_m: World, w: World): void {
    w.now += this.ms;
  }
  toString = () => `advance(${this.ms})`;
}

class End implements Command {
  constructor(readonly client: number) {}
  check = () => true;
  run(_m: World, w: World): void {
    w.ended.add(CLIENTS[this.client].session);
  }
  toString = () => `end(${CLIENTS[this.client].session})`;
}

const client = fc.integer({ min: 0, max: CLIENTS.length - 1 });
const commands = fc.commands(
  [
    client.map((c) => new Ask('take', c)),
    client.map((c) => new Ask('take', c)),
    client.map((c) => new Ask('give', c)),
    client.map((c) => new Ask('look', c)),
    client.map((c) => new Life(c)),
    fc.integer({ min: 1, max: 4000 }).map((ms) => new Advance(ms)),
    client.map((c) => new End(c)),
  ],
  { maxCommands: 60, size: 'max' },
);
const pools = fc.record({
  seats: fc.integer({ min: 1, max: 3 }),
  perUser: fc.integer({ min: 0, max: 2 }),
  heartbeatMs: fc.integer({ min: 1000, max: 5000 }),
  maxHoldMs: fc.option(fc.integer({ min: 2000, max: 10_000 }), { nil: null }),
  queueLimit: fc.integer({ min: 1, max: 4 }),
  perUserQueueLimit: fc.integer({ min: 1, max: 3 }),
});

t.test('the seat machine follows the model over generated histories', async (t) => {
  fc.assert(
    fc.property(pools, commands, (shape, cmds) => {
      const pool: PoolRecord = { name: 'p', createdAt: 0, ...shape };
      const world = (): World => ({ pool, now: 1_000_000, seats: noSeats('p'), lastLife: new Map(), lastTake: new Map(), ended: new Set() });
      fc.modelRun(() => ({ model: world(), real: world() }), cmds);
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 histories held');
});

t.test('a queue in line order: the first eligible waiter is served first; a user at its cap holds up nobody', async (t) => {
  const pool: PoolRecord = { name: 'p', seats: 1, perUser: 1, heartbeatMs: 60_000, maxHoldMs: null, queueLimit: 10, perUserQueueLimit: 10, createdAt: 0 };
  let seats = noSeats('p');
  const ask = (kind: 'take' | 'give', session: string, user: string, now: number) => {
    const d = decideSeat(pool, seats, { kind, session, user }, now);
    seats = d.seats;
    return d.answer;
  };
  t.match(ask('take', 'a1', 'ana', 1), { seat: 'granted' }, 'a free seat: granted');
  t.match(ask('take', 'a2', 'ana', 2), { seat: 'queued', position: 1 }, 'ana at her cap waits');
  t.match(ask('take', 'b1', 'bo', 3), { seat: 'queued', position: 2 });
  t.match(ask('give', 'a1', 'ana', 4), { seat: 'none' }, 'the seat is given back');
  t.match(ask('take', 'c1', 'cy', 5), { seat: 'queued', position: 3 }, 'a newcomer does not overtake the line');
  t.match(ask('take', 'b1', 'bo', 6), { seat: 'queued', position: 2 }, 'bo is behind ana’s second client, who is eligible again');
  t.match(ask('take', 'a2', 'ana', 7), { seat: 'granted' }, 'first in line: granted');
  t.match(ask('take', 'b1', 'bo', 8), { seat: 'queued', position: 1 });
  t.equal(seats.holders.length, 1);
});

t.test('silence and the longest hold take a seat away; the next in line gets it', async (t) => {
  const pool: PoolRecord = { name: 'p', seats: 1, perUser: 0, heartbeatMs: 1000, maxHoldMs: 5000, queueLimit: 10, perUserQueueLimit: 10, createdAt: 0 };
  let seats = noSeats('p');
  const ask = (session: string, now: number, lives = new Map<string, number | null>()) => {
    const d = decideSeat(pool, seats, { kind: 'take', session, user: session }, now, lives);
    seats = d.seats;
    return d.answer;
  };
  t.match(ask('x', 0), { seat: 'granted', expiresInMs: 1000 });
  t.match(ask('y', 500), { seat: 'queued', position: 1 });
  t.match(ask('y', 1200, new Map([['x', 900]])), { seat: 'queued' }, 'x showed life through another exchange at 900: it keeps the seat');
  t.match(ask('y', 2000), { seat: 'granted' }, 'x silent since 900: its seat goes to y');
  t.match(ask('y', 2500), { seat: 'granted', expiresInMs: 1000 }, 'a heartbeat');
  t.match(ask('y', 6900, new Map([['y', 6800]])), { seat: 'granted', expiresInMs: 100 }, 'the longest hold comes first');
  t.match(ask('z', 7100, new Map([['y', 7050]])), { seat: 'granted' }, 'y held for 5 s: z gets the seat');
  t.match(ask('w', 7200, new Map([['z', null]])), { seat: 'granted' }, 'an ended session holds nothing');
});
