/**
 * `rotor backup` while `rotor serve` runs on the same data directory and a client keeps
 * exchanging, then `rotor restore` into a fresh directory and a second server on it: the users
 * are there, a session acknowledged before the backup resumes, one begun after it is unknown.
 * And what restore refuses: a store a server has open, and any directory that already holds a
 * store (a server in another PID namespace would hold its lock unseen).
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RotorClient, SessionRevokedError, tcpConnect } from '../../src/client/index.ts';
import { cli, freePort, startCliServer, type Run } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-backup-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const data = join(tmp, 'data');
// A dot in its name: still a directory (lmdb-js would take it for a file name).
const restored = join(tmp, 'restored.d');
// The keys live outside the data directory, as serve --help advises: a backup does not carry them.
mkdirSync(join(tmp, 'secrets'), { mode: 0o700 });
const keyFile = join(tmp, 'secrets', 'keys.json');
const backupFile = join(tmp, 'rotor.backup');

const mustSucceed = (what: string, run: Run): Run => {
  if (run.code !== 0) throw new Error(`${what} failed: ${JSON.stringify(run)}`);
  return run;
};
const client = (port: number) => new RotorClient({ connect: tcpConnect({ port }), retries: 0 });

mustSucceed('user add alice', await cli('user', 'add', 'alice', '--password', 'wonderland', '--data', data));
mustSucceed('user add bob', await cli('user', 'add', 'bob', '--password', 'builder', '--data', data));
const port = await freePort();
const server = await startCliServer(['serve', '--data', data, '--key-file', keyFile, '--port', String(port), '--log-level', 'warn'], port);
t.teardown(() => server.stop('SIGKILL'));

// Alice's session: an exchange, acknowledged, before the backup. Her newest token is kept.
const alice = client(port);
await alice.login('alice', 'wonderland');
await alice.request('GET', '/hello');
await alice.ack();
const aliceToken = alice.token!;
alice.close();

// Bob keeps exchanging while the backup runs: a loop bounded by a count, stopped once the backup is done.
const bob = client(port);
await bob.login('bob', 'builder');
let backupRunning = false;
let backupDone = false;
const exchanges = { before: 0, during: 0, after: 0, failed: [] as string[] };
const busy = (async () => {
  for (let i = 0; i < 100_000 && !(backupDone && exchanges.after >= 10); i++) {
    try {
      const reply = await bob.request('GET', '/hello');
      if (reply.body.toString() !== 'hello, bob') exchanges.failed.push(reply.body.toString());
    } catch (err) {
      exchanges.failed.push(String(err));
      return;
    }
    if (backupDone) exchanges.after++;
    else if (backupRunning) exchanges.during++;
    else exchanges.before++;
  }
})();
while (exchanges.before < 10 && exchanges.failed.length === 0) await new Promise((resolve) => setImmediate(resolve));
backupRunning = true;
const backup = await cli('backup', backupFile, '--data', data);
backupDone = true;
await busy;
bob.close();

// After the backup: a session the backup cannot hold.
const late = client(port);
await late.login('alice', 'wonderland');
const lateToken = late.token!;
late.close();

const backupAgain = await cli('backup', backupFile, '--data', data);
const restoreLive = await cli('restore', backupFile, '--data', data);
const restore = await cli('restore', backupFile, '--data', restored);
const restoreOverData = await cli('restore', backupFile, '--data', restored);
const restoreOption = await cli('restore', backupFile, '--data', restored, '--force');

t.test('rotor backup copies the store of a running server, which kept serving', async (t) => {
  t.equal(backup.code, 0, backup.stderr);
  t.match(backup.stdout, `backed up ${data} to ${backupFile}: 2 users, `);
  t.match(backup.stderr, /the MAC keys are not in a backup/, 'and says what it does not hold');
  t.equal((statSync(backupFile).mode & 0o777).toString(8), '600', 'the backup is its owner\'s alone');
  t.strictSame(exchanges.failed, [], 'no exchange failed');
  t.ok(exchanges.during > 0, `exchanges went on while rotor backup ran (${JSON.stringify(exchanges)})`);
  t.equal(backupAgain.code, 1, 'an existing backup file is not replaced without --force');
  t.match(backupAgain.stderr, /exists: give another name, or --force/);
});

t.test('rotor restore refuses the store of a running server', async (t) => {
  t.equal(restoreLive.code, 1);
  t.match(restoreLive.stderr, `the store in ${data} is open in process ${server.child.pid}`);
  // That server still serves alice from its own store.
  const check = client(port);
  t.teardown(() => check.close());
  await check.login('alice', 'wonderland');
  t.equal((await check.request('GET', '/hello')).body.toString(), 'hello, alice');
});

t.test('rotor restore into a fresh directory, never over a store', async (t) => {
  t.equal(restore.code, 0, restore.stderr);
  t.match(restore.stdout, `restored ${backupFile} into ${restored}: 2 users, `);
  t.equal((statSync(restored).mode & 0o777).toString(8), '700', 'the directory rotor made');
  t.equal((statSync(join(restored, 'data.mdb')).mode & 0o777).toString(8), '600', 'the data file');
  t.equal(restoreOverData.code, 1, 'a second restore over it is refused');
  t.match(restoreOverData.stderr, /already holds a store, and restore never replaces one: restore into a new directory/);
  t.equal(restoreOption.code, 1, 'and there is no --force to make it');
  t.match(restoreOption.stderr, /Unknown argument|force/);
});

t.test('a server on the restored store serves the users and resumes a session acknowledged before the backup', async (t) => {
  const port2 = await freePort();
  const second = await startCliServer(['serve', '--data', restored, '--key-file', keyFile, '--port', String(port2), '--log-level', 'warn'], port2);
  t.teardown(() => second.stop('SIGKILL'));

  const resumed = client(port2);
  t.teardown(() => resumed.close());
  await resumed.useToken(aliceToken);
  t.equal((await resumed.request('GET', '/hello')).body.toString(), 'hello, alice', "alice's session goes on with her newest token");

  const fresh = client(port2);
  t.teardown(() => fresh.close());
  await fresh.login('bob', 'builder');
  t.equal((await fresh.request('GET', '/hello')).body.toString(), 'hello, bob', 'bob logs in with his password');

  const after = client(port2);
  t.teardown(() => after.close());
  await after.useToken(lateToken);
  const err = await after.request('GET', '/hello').catch((e: unknown) => e);
  t.ok(err instanceof SessionRevokedError, `a session begun after the backup is unknown there: ${String(err)}`);
});
