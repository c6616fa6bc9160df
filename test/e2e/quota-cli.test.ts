/**
 * `rotor template …`, `rotor lot …` and `rotor session show` on the embedded store (spec §10), as
 * an operator types them, with `rotor serve` on the same data directory: codes issued as CSV,
 * a code logging in and spending its cap, the session and its code looked into, a lot revoked
 * under a live connection; and what each command refuses, with a reason.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeader } from '../../src/wire/index.ts';
import { cli, freePort, RawConn, request, startCliServer, type Run } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-quota-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, 'data');
const PRINTED = /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/;

const ok = (t: Test, run: Run, what: string): Run => {
  t.equal(run.code, 0, `${what}: ${run.stderr}`);
  return run;
};
/** A command that must fail (exit 1) saying `reason` on stderr. */
const refused = (t: Test, run: Run, reason: RegExp, what?: string) => {
  t.equal(run.code, 1, what ?? `refused: ${reason}`);
  t.match(run.stderr, reason);
};
const json = async (...args: string[]) => JSON.parse((await cli(...args, '--data', data)).stdout);
/** The codes of a lot's CSV, after its header. */
const csvCodes = (csv: string) => csv.trim().split('\n').slice(1).map((line) => line.split(',')[1]);

t.test('templates: add, list, show, remove', async (t) => {
  const full = ok(t, await cli('template', 'add', 'full', '--max-in', '500MB', '--max-out', '2GB', '--max-total', '2GB', '--connection', '4h', '--usage', '8h', '--wall', '24h', '--age', '30d', '--single-use', '--nodes', 'lobby,bar', '--data', data), 'add full');
  t.match(full.stdout, 'template saved: full: in 500000000 B, out 2000000000 B, total 2000000000 B, connection 14400 s, usage 28800 s, wall 86400 s, age 2592000 s, single connection, nodes lobby bar');
  ok(t, await cli('template', 'add', 'day', '--max-total', '3kB', '--data', data), 'add day');
  ok(t, await cli('template', 'add', 'spare', '--max-in', '10KiB', '--data', data), 'add spare');
  const list = ok(t, await cli('template', 'list', '--data', data), 'list');
  t.same(list.stdout.trim().split('\n').map((line) => line.split(':')[0]), ['day', 'full', 'spare'], 'one line each, by name');
  t.match(await json('template', 'show', 'full'), { name: 'full', maxBytesIn: 500_000_000, maxBytesOut: 2_000_000_000, connectionMs: 14_400_000, ageMs: 30 * 86_400_000, reusable: false, nodes: ['lobby', 'bar'] });
  t.match(await json('template', 'show', 'spare'), { maxBytesIn: 10_240, maxBytesOut: null });
  ok(t, await cli('template', 'remove', 'spare', '--data', data), 'remove');
  refused(t, await cli('template', 'show', 'spare', '--data', data), /no template spare/);
});

t.test('bad input is refused with a reason, and stores nothing', async (t) => {
  refused(t, await cli('template', 'add', 'x', '--max-in', '5XB', '--data', data), /bad byte size "5XB": want e.g. 10kB, 500MB, 2GB/);
  refused(t, await cli('template', 'add', 'x', '--usage', '8', '--data', data), /bad duration "8"/);
  refused(t, await cli('lot', 'issue', '--template', 'nope', '--count', '5', '--data', data), /no template nope/);
  refused(t, await cli('lot', 'issue', '--template', 'day', '--count', '0', '--data', data), /--count must be a whole number from 1 to 100000, got 0/);
  refused(t, await cli('lot', 'issue', '--template', 'day', '--count', '1', '--owner', 'nobody', '--data', data), /no user nobody/);
  t.equal((await cli('lot', 'list', '--data', data)).stdout, '', 'no lot was stored');
  refused(t, await cli('lot', 'show', 'nope', '--data', data), /no lot nope/);
  refused(t, await cli('session', 'show', 'nope', '--data', data), /no session nope/);
});

t.test('lots: issued as CSV to stdout or a new 0600 file, listed, shown; a code logs in and spends its cap; the lot revoked', async (t) => {
  const issued = ok(t, await cli('lot', 'issue', '--template', 'day', '--count', '3', '--comment', 'front desk, winter', '--id', 'desk-1', '--issuer', 'ops', '--data', data), 'issue');
  const lines = issued.stdout.trim().split('\n');
  t.equal(lines[0], 'lot,code,template,comment', 'CSV on stdout');
  t.equal(lines.length, 4, 'a header and one line per code');
  const codes = csvCodes(issued.stdout);
  t.ok(codes.every((code) => PRINTED.test(code)), 'codes as printed on a card');
  t.match(lines[1], /^desk-1,[0-9A-Z-]{19},day,"front desk, winter"$/);
  t.match(issued.stderr, 'lot desk-1 issued: 3 codes of template day', 'what was done, on stderr');

  const file = join(tmp, 'cards.csv');
  const toFile = ok(t, await cli('lot', 'issue', '--template', 'full', '--count', '2', '--csv', file, '--data', data), 'issue --csv');
  t.match(toFile.stdout, /^lot full-\d{8}-[0-9a-f]{4} issued: 2 codes of template full, written to /, 'a default id: template, date, random suffix');
  t.equal(statSync(file).mode & 0o777, 0o600, 'the CSV file is 0600');
  t.equal(readFileSync(file, 'utf8').trim().split('\n').length, 3);
  refused(t, await cli('lot', 'issue', '--template', 'full', '--count', '2', '--csv', file, '--data', data), /cards\.csv exists/, 'an existing file is not replaced');
  t.equal(readFileSync(file, 'utf8').trim().split('\n').length, 3, 'and is left as it was');

  const list = ok(t, await cli('lot', 'list', '--data', data), 'list');
  const listed = list.stdout.trim().split('\n');
  t.equal(listed.length, 2, 'no lot for the refused issue');
  t.match(listed.find((line) => line.startsWith('desk-1:')), /^desk-1: template day, 3 codes, issued \S+ by ops, "front desk, winter"$/);

  const shown = await json('lot', 'show', 'desk-1');
  t.match(shown, { lot: { id: 'desk-1', template: 'day', comment: 'front desk, winter', issuer: 'ops', count: 3, revokedAt: null }, status: { unused: 3, active: 0, exhausted: 0, expired: 0, revoked: 0 } });
  t.equal(shown.lot.codes, undefined, "not the codes' ids");
  t.equal(shown.codes, undefined, 'codes only with --codes');

  refused(t, await cli('template', 'remove', 'day', '--data', data), /template day is used by lot desk-1: revoke it first/, 'a template a lot uses stays');

  // A server on the same store; the code logs in over TCP.
  const port = await freePort();
  const server = await startCliServer(['serve', '--data', data, '--port', String(port), '--log-level', 'warn'], port);
  t.teardown(() => server.stop('SIGKILL'));
  const conn = await RawConn.connect(port);
  t.teardown(() => conn.destroy());
  const login = await conn.call(request('POST', '/rotor/login', { Code: codes[0].toLowerCase() }));
  t.equal(getHeader(login, 'Quota-Template'), 'day', 'the code logs in');
  let token = getHeader(login, 'Token')!;

  const live = await json('lot', 'show', 'desk-1', '--codes');
  t.match(live.status, { unused: 2, active: 1 });
  t.equal(live.codes.length, 3);
  t.ok(live.codes.every((code: { id: string }) => code.id.length === 12), "each code by its id's first 12 characters");
  const active = live.codes.find((code: { status: string }) => code.status === 'active');
  t.match(active, { used: { bytesIn: 0, bytesOut: 0 }, lastEnd: null }, 'with what it used and how it last ended');
  const sessionId: string = active.session;
  t.ok(sessionId, 'and its live session');

  const open = await json('session', 'show', sessionId);
  t.match(open, { id: sessionId, user: /^code:/, gen: 1, revoked: null, quota: { template: 'day', maxBytesTotal: 3000 }, code: { status: 'active', live: true, lastEnd: null } });
  t.notOk('tokenHash' in open || 'prev' in open, 'no token hash, no kept reply');

  let error: string | undefined;
  for (let i = 0; i < 50 && error === undefined; i++) {
    const reply = await conn.call(request('POST', '/reverse', { Token: token }, 'x'.repeat(200)));
    error = getHeader(reply, 'Error');
    token = getHeader(reply, 'Token') ?? token;
  }
  t.equal(error, 'ROTOR_E_QUOTA_BYTES_TOTAL', 'the cap ends the session');
  const ended = await json('session', 'show', sessionId);
  t.match(ended, { revoked: { reason: 'quota' }, quota: { endedBy: 'bytes-total' }, code: { status: 'exhausted', live: false, lastEnd: { reason: 'bytes-total' } } }, 'the session shows why it ended');
  t.ok(ended.code.used.bytesIn > 0, 'its counters folded into the code');

  // A second code's live connection, then the lot revoked under it.
  const second = await conn.call(request('POST', '/rotor/login', { Code: codes[1] }));
  let secondToken = getHeader(second, 'Token')!;
  const used = await conn.call(request('GET', '/rotor/quota', { Token: secondToken }));
  secondToken = getHeader(used, 'Token')!;
  const revoked = ok(t, await cli('lot', 'revoke', 'desk-1', '--data', data), 'revoke');
  t.match(revoked.stdout, 'lot desk-1 revoked: 3 codes and 1 live session revoked');
  const afterRevoke = await conn.call(request('GET', '/rotor/quota', { Token: secondToken }));
  t.equal(getHeader(afterRevoke, 'Error'), 'ROTOR_E_SESSION_REVOKED', 'the live session refuses its next exchange');
  t.equal(getHeader(await conn.call(request('POST', '/rotor/login', { Code: codes[2] })), 'Error'), 'ROTOR_E_CODE_REVOKED', 'an unused code of the lot no longer logs in');
  const after = await json('lot', 'show', 'desk-1', '--codes');
  t.match(after, { lot: { revokedAt: Number }, status: { unused: 0, active: 0, exhausted: 0, expired: 0, revoked: 3 } });
  t.same(after.codes.map((code: { lastEnd: { reason: string } | null }) => code.lastEnd?.reason ?? 'none').sort(), ['bytes-total', 'none', 'revoked'], 'how each last ended: its cap, never used, the revocation');
  t.match((await cli('lot', 'list', '--data', data)).stdout, /desk-1: .*REVOKED/);
  ok(t, await cli('template', 'remove', 'day', '--data', data), 'once its lot is revoked, its template may go');
});
