/** `rotor pool add | list | show | remove` on the embedded store (spec §9), as an operator types them. */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-pool-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, 'data');

t.test('define, list, show, change and remove a pool', async (t) => {
  const added = await cli('pool', 'add', 'cad', '--seats', '5', '--per-user', '2', '--heartbeat', '90s', '--max-hold', '8h', '--data', data);
  t.equal(added.code, 0, added.stderr);
  t.match(added.stdout, /pool saved: cad: 5 seats, at most 2 per user, heartbeat 90 s, longest hold 28800 s, queue 100 \(10 per user\)/);
  t.equal((await cli('pool', 'add', 'plot', '--seats', '1', '--data', data)).code, 0);
  const list = await cli('pool', 'list', '--data', data);
  t.equal(list.code, 0, list.stderr);
  t.same(
    list.stdout.trim().split('\n'),
    ['cad: 5 seats, 0 held, 0 waiting, at most 2 per user, heartbeat 90 s, longest hold 28800 s, queue 100 (10 per user)', 'plot: 1 seat, 0 held, 0 waiting, heartbeat 300 s, queue 100 (10 per user)'],
  );
  const show = await cli('pool', 'show', 'cad', '--data', data);
  t.match(JSON.parse(show.stdout), { pool: { name: 'cad', seats: 5, perUser: 2, heartbeatMs: 90_000, maxHoldMs: 28_800_000 }, holders: [], queue: [] });
  t.equal((await cli('pool', 'add', 'cad', '--seats', '6', '--data', data)).code, 0, 'add again changes it');
  t.match(JSON.parse((await cli('pool', 'show', 'cad', '--data', data)).stdout), { pool: { seats: 6, perUser: 0 } });
  t.equal((await cli('pool', 'remove', 'plot', '--data', data)).code, 0);
  const again = await cli('pool', 'remove', 'plot', '--data', data);
  t.equal(again.code, 1);
  t.match(again.stderr, /no pool plot/);
});

t.test('bad definitions are refused with a reason', async (t) => {
  const zero = await cli('pool', 'add', 'cad', '--seats', '0', '--data', data);
  t.equal(zero.code, 1);
  t.match(zero.stderr, /--seats must be a whole number from 1/);
  const name = await cli('pool', 'add', 'no/slash', '--seats', '1', '--data', data);
  t.equal(name.code, 1);
  t.match(name.stderr, /a pool name is 1–64 of/);
  const hold = await cli('pool', 'add', 'cad', '--seats', '1', '--heartbeat', '10min', '--max-hold', '1min', '--data', data);
  t.equal(hold.code, 1);
  t.match(hold.stderr, /--max-hold/);
});
