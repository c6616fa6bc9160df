/**
 * Seats through the dispatcher (spec §9): exchanges that rotate and replay, the queue, seats
 * that follow the session (logout, reuse), silence, and nodes racing for the last seat.
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { silentLogger } from '../../src/log/index.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import type { PoolRecord } from '../../src/seats/types.ts';
import { getHeader } from '../../src/wire/index.ts';
import { harness, type Harness } from '../server/harness.ts';

const pool = (over: Partial<PoolRecord> = {}): PoolRecord => ({
  name: 'cad',
  seats: 1,
  perUser: 0,
  heartbeatMs: 60_000,
  maxHoldMs: null,
  queueLimit: 10,
  perUserQueueLimit: 10,
  createdAt: 0,
  ...over,
});

/** A client: its newest token, and one seat request at a time. */
async function client(h: Harness, user = 'alice') {
  let token = await h.login(user);
  const send = async (verb: string, path = '/rotor/seats/cad') => {
    const reply = await h.send(verb, path, [['Token', token]]);
    const next = getHeader(reply.frame, 'Token');
    const sent = token;
    if (next) token = next;
    return { ...reply, sent, seat: getHeader(reply.frame, 'Seat'), error: getHeader(reply.frame, 'Error') };
  };
  return { send, token: () => token };
}

async function setup(over: Partial<PoolRecord> = {}) {
  const h = await harness(exampleApp());
  await h.store.putUser({ ...(await h.store.loadUser('alice'))!, name: 'bob' });
  await h.store.putPool(pool(over));
  return h;
}

t.test('take, queue, give back: the waiter is granted when it asks again; each exchange rotates', async (t) => {
  const h = await setup();
  const a = await client(h);
  const b = await client(h, 'bob');
  const taken = await a.send('POST');
  t.equal(taken.frame.status, 200);
  t.equal(taken.seat, 'granted');
  t.equal(getHeader(taken.frame, 'Seat-Expires'), '60', 'kept 60 s without a sign of life');
  t.ok(getHeader(taken.frame, 'Token'), 'the exchange rotated');
  const queued = await b.send('POST');
  t.equal(queued.frame.status, 202);
  t.equal(queued.seat, 'queued');
  t.equal(getHeader(queued.frame, 'Seat-Position'), '1');
  t.ok(Number(getHeader(queued.frame, 'Wait-for')) >= 1);
  const look = await b.send('GET');
  t.same(JSON.parse(look.frame.body!.toString()), { pool: 'cad', seats: 1, held: 1, queued: 1, seat: 'queued', position: 1 });
  t.equal((await a.send('DELETE')).seat, 'none', 'given back');
  t.equal((await b.send('POST')).seat, 'granted', 'the waiter asks again: granted');
  t.equal((await a.send('GET')).seat, 'none');
});

t.test('a lost reply: the retry with the previous token gets the identical grant, and no second seat', async (t) => {
  const h = await setup({ seats: 2 });
  const a = await client(h);
  const first = await a.send('POST');
  const again = await h.send('POST', '/rotor/seats/cad', [['Token', first.sent]]);
  t.same(again.bytes, first.bytes, 'byte for byte');
  t.equal((await h.store.loadSeats('cad'))!.holders.length, 1, 'one seat held');
});

t.test('seats follow the session: logout and a detected reuse give the seat back at once', async (t) => {
  const h = await setup();
  const a = await client(h);
  const b = await client(h, 'bob');
  t.equal((await a.send('POST')).seat, 'granted');
  t.equal((await b.send('POST')).seat, 'queued');
  await a.send('POST', '/rotor/logout');
  t.same((await h.store.loadSeats('cad'))!.holders, [], 'logout freed the seat');
  t.equal((await b.send('POST')).seat, 'granted');

  const c = await client(h);
  t.equal((await c.send('POST')).seat, 'queued');
  const stolen = c.token();
  await c.send('GET', '/hello');
  await c.send('GET', '/hello');
  const reuse = await h.send('GET', '/hello', [['Token', stolen]]);
  t.equal(getHeader(reuse.frame, 'Error'), 'ROTOR_E_TOKEN_REUSED');
  t.same((await h.store.loadSeats('cad'))!.queue, [], 'the revoked session left the queue');
});

t.test('silence: a holder that shows no life for the heartbeat loses its seat to the next in line; any exchange is a sign of life', async (t) => {
  const h = await setup({ heartbeatMs: 60_000 });
  const a = await client(h);
  const b = await client(h, 'bob');
  t.equal((await a.send('POST')).seat, 'granted');
  t.equal((await b.send('POST')).seat, 'queued');
  h.clock.now += 50_000;
  await a.send('GET', '/hello');
  t.equal((await b.send('POST')).seat, 'queued', 'alice used her session 50 s in');
  h.clock.now += 50_000;
  t.equal((await b.send('POST')).seat, 'queued', '100 s after her seat request, 50 s after her last exchange: she keeps it');
  h.clock.now += 15_000;
  t.equal((await b.send('POST')).seat, 'granted', 'alice silent for 65 s: bob gets the seat');
  t.equal((await a.send('GET')).seat, 'none');
});

t.test('per-user cap, queue limits, unknown pool, bad name', async (t) => {
  const h = await setup({ seats: 2, perUser: 1, queueLimit: 2, perUserQueueLimit: 1 });
  const a1 = await client(h);
  const a2 = await client(h);
  const a3 = await client(h);
  const b = await client(h, 'bob');
  t.equal((await a1.send('POST')).seat, 'granted');
  t.equal((await a2.send('POST')).seat, 'queued', 'alice at her cap of 1 waits although a seat is free');
  t.equal((await b.send('POST')).seat, 'granted', 'and holds up nobody');
  const full = await a3.send('POST');
  t.equal(full.frame.status, 429);
  t.equal(full.error, 'ROTOR_E_QUEUE_FULL', 'alice already has her one place in line');
  t.ok(getHeader(full.frame, 'Wait-for'));
  t.ok(getHeader(full.frame, 'Token'), 'refused after admission: rotated');
  const unknown = await a3.send('POST', '/rotor/seats/nope');
  t.equal(unknown.error, 'ROTOR_E_POOL_UNKNOWN');
  t.equal(unknown.frame.status, 404);
  const bad = await h.send('POST', '/rotor/seats/no%20spaces', [['Token', a3.token()]]);
  t.equal(getHeader(bad.frame, 'Error'), 'ROTOR_E_BAD_REQUEST');
  t.equal(getHeader(bad.frame, 'Token'), undefined, 'refused before admission');
  const verb = await h.send('PUT', '/rotor/seats/cad', [['Token', a3.token()]]);
  t.equal(getHeader(verb.frame, 'Allow'), 'POST, DELETE, GET');
});

t.test('two nodes on one store, many clients at once for the last seats: never more holders than seats', async (t) => {
  const h = await setup({ seats: 2 });
  const other = new Rotor({ config: h.rotor.config, store: h.store, app: exampleApp(), keys: h.keys, log: silentLogger(), now: () => h.clock.now, random: seededRandom(9) });
  const tokens = await Promise.all(Array.from({ length: 12 }, (_, i) => h.login(i % 2 ? 'alice' : 'bob')));
  const replies = await Promise.all(
    tokens.map((token, i) => (i % 2 ? h.rotor : other).dispatch({ kind: 'request', verb: 'POST', path: '/rotor/seats/cad', headers: [['Token', token]], body: undefined })),
  );
  const seats = replies.map((r) => getHeader(r.frame, 'Seat') ?? getHeader(r.frame, 'Error'));
  t.equal(seats.filter((s) => s === 'granted').length, 2, 'exactly two granted');
  t.equal(seats.filter((s) => s === 'queued').length, 10, 'the rest in line');
  t.equal((await h.store.loadSeats('cad'))!.holders.length, 2);
});

t.test('a waiter keeps its place by asking again, not by using its session elsewhere: a free seat is never held hostage', async (t) => {
  const h = await setup({ heartbeatMs: 60_000 });
  const a = await client(h);
  const b = await client(h, 'bob');
  const c = await client(h);
  t.equal((await a.send('POST')).seat, 'granted');
  t.equal((await b.send('POST')).seat, 'queued');
  t.equal((await a.send('DELETE')).seat, 'none', 'the seat is free, kept for bob, first in line');
  for (let i = 0; i < 3; i++) {
    h.clock.now += 30_000;
    await b.send('GET', '/hello'); // bob uses the app, never asks the pool again
  }
  t.equal((await c.send('POST')).seat, 'granted', '90 s on: bob lost his place; the free seat goes to the next asker');
  t.equal((await b.send('GET')).seat, 'none');
});

t.test('a never-expiring session that falls silent still loses its seat at the heartbeat', async (t) => {
  const h = await harness(exampleApp(), { session: { tokenTtlMinutes: -1, allowNeverExpiring: true } });
  await h.store.putUser({ ...(await h.store.loadUser('alice'))!, name: 'bob' });
  await h.store.putPool(pool({ heartbeatMs: 60_000 }));
  const a = await client(h);
  const b = await client(h, 'bob');
  t.equal((await a.send('POST')).seat, 'granted');
  t.equal((await b.send('POST')).seat, 'queued');
  h.clock.now += 61_000;
  t.equal((await b.send('POST')).seat, 'granted', 'alice silent for 61 s: her token never expires, her seat does');
});

t.test('a logout on one node racing a take on another: the ended session keeps no seat', async (t) => {
  const h = await setup({ seats: 1 });
  let openGate!: () => void;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  let gated = false;
  // Node A's store holds its seat write at a gate: node B's logout runs meanwhile.
  const slow = Object.create(h.store) as typeof h.store;
  slow.commitSeats = async (next, rev) => {
    gated = true;
    await gate;
    return h.store.commitSeats(next, rev);
  };
  Object.defineProperty(slow, 'loadSessionNow', { value: undefined });
  const nodeA = new Rotor({ config: h.rotor.config, store: slow, app: exampleApp(), keys: h.keys, log: silentLogger(), now: () => h.clock.now, random: seededRandom(21) });
  const token = await h.login();
  const frame = (verb: string, path: string) => ({ kind: 'request' as const, verb, path, headers: [['Token', token]] as Array<[string, string]>, body: undefined });
  const take = nodeA.dispatch(frame('POST', '/rotor/seats/cad'));
  while (!gated) await new Promise((resolve) => setImmediate(resolve));
  const logout = await h.rotor.dispatch(frame('POST', '/rotor/logout'));
  t.equal(logout.status, 200, 'node B logged the session out while A was taking a seat');
  openGate();
  const taken = await take;
  t.equal(taken.error, 'ROTOR_E_SESSION_REVOKED', 'node A finds the session revoked');
  t.same((await h.store.loadSeats('cad'))?.holders ?? [], [], 'and gives back the seat its first attempt took');
});
