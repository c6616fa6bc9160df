/**
 * A lot at scale on the embedded store (spec §10): 10,000 codes issued and listed, half of them
 * used through a Rotor on that store, then the lot revoked with src/quotas/lots.ts — every code
 * revoked, every live session refused at its next exchange, no code of the lot logging in, the
 * used codes' counters folded.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exampleApp } from '../../src/app/example.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { codeId, normalizeCode } from '../../src/quotas/codes.ts';
import { countByStatus, eachAtOnce, lotCodes, revokeLot } from '../../src/quotas/lots.ts';
import { issueLot, lotCsv, templateRecord } from '../../src/quotas/templates.ts';
import type { CodeRecord } from '../../src/quotas/types.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { FrameParser, getHeader, type Header, type ResponseFrame } from '../../src/wire/index.ts';

const COUNT = 10_000;
const USED = 5_000;
const PRINTED = /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/;
const RETENTION = 24 * 3_600_000;

const dir = mkdtempSync(join(tmpdir(), 'rotor-lot-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const store = await LmdbStore.open(dir);
t.teardown(() => store.close());
const clock = { now: Date.UTC(2026, 10, 24) };
const config = resolveConfig({ auth: { scryptN: 1024 }, session: { tokenTtlMinutes: 10 } });
const rotor = new Rotor({ config, store, app: exampleApp(), keys: KeyRing.generate(seededRandom(2)), log: silentLogger(), now: () => clock.now, random: seededRandom(3) });

async function send(verb: string, path: string, headers: Header[]): Promise<ResponseFrame> {
  const reply = await rotor.dispatch({ kind: 'request', verb, path, headers, body: undefined });
  const { frames } = new FrameParser().push(reply.bytes);
  if (frames.length !== 1 || frames[0].kind !== 'response') throw new Error('reply is not one response frame');
  return frames[0];
}

const template = templateRecord('day-pass', { maxBytesTotal: 10_000_000 }, clock.now);
await store.commitRecord('template', template.name, template, 0);

let started = Date.now();
const issued = await issueLot(store, seededRandom(7), { id: 'front-desk', template, count: COUNT, comment: 'lobby, "winter"', issuer: 'op', owner: '', now: clock.now });
t.comment(`issued ${COUNT} codes in ${Date.now() - started} ms`);

t.test('10,000 codes issued: stored, listed, unique, all unused, as printed', async (t) => {
  t.equal(issued.codes.length, COUNT);
  t.equal(issued.lot.codes.length, COUNT, "the lot lists each code's id");
  t.equal(new Set(issued.codes).size, COUNT, 'codes unique');
  t.equal(new Set(issued.lot.codes).size, COUNT, 'ids unique');
  t.equal(issued.codes.filter((code) => PRINTED.test(code)).length, COUNT, 'every code as printed: XXXX-XXXX-XXXX-XXXX of Crockford base32');
  t.same(issued.codes.slice(0, 100).map((code) => codeId(normalizeCode(code)!)), issued.lot.codes.slice(0, 100), 'the ids are the codes\' hashes, in order');
  const listed = await store.listRecords<CodeRecord>('code');
  t.equal(listed.length, COUNT, "listRecords('code') has them all");
  const codes = await lotCodes(store, issued.lot);
  t.equal(codes.length, COUNT, "the lot's codes load");
  t.same(countByStatus(codes, template, clock.now), { unused: COUNT, active: 0, exhausted: 0, expired: 0, revoked: 0 }, 'all unused');
  const csv = lotCsv(issued).split('\n');
  t.equal(csv.at(-1), '', 'the CSV ends with a newline');
  t.equal(csv.length - 1, COUNT + 1, 'a header and one line per code');
  t.equal(csv[0], 'lot,code,template,comment');
  t.equal(csv[1], `front-desk,${issued.codes[0]},day-pass,"lobby, ""winter"""`, 'a comment with a comma and quotes, quoted');
});

let tokens: (string | undefined)[] = [];

t.test('5,000 of them log in through a Rotor on that store, one exchange each', async (t) => {
  started = Date.now();
  tokens = await eachAtOnce(
    issued.codes.slice(0, USED),
    async (code) => {
      const first = getHeader(await send('POST', '/rotor/login', [['Code', code]]), 'Token');
      const status = first && (await send('GET', '/rotor/quota', [['Token', first]]));
      return status && status.status === 200 ? getHeader(status, 'Token') : undefined;
    },
    32,
  );
  t.comment(`${USED} logins and exchanges in ${Date.now() - started} ms`);
  t.equal(tokens.filter(Boolean).length, USED, 'every login and exchange succeeded');
  const codes = await lotCodes(store, issued.lot);
  t.same(countByStatus(codes, template, clock.now), { unused: COUNT - USED, active: USED, exhausted: 0, expired: 0, revoked: 0 });
  t.equal(codes.filter((code) => code.session !== null).length, USED, 'each used code names its live session');
});

t.test('the lot revoked: every code revoked, every session refused, no code logs in, the counters folded', async (t) => {
  started = Date.now();
  const done = await revokeLot(store, 'front-desk', clock.now, RETENTION);
  t.comment(`revoked in ${Date.now() - started} ms`);
  t.same([done.codes, done.sessions], [COUNT, USED], 'every code, and every live session');
  t.equal(done.lot.revokedAt, clock.now);

  const codes = await lotCodes(store, issued.lot);
  t.same(countByStatus(codes, template, clock.now), { unused: 0, active: 0, exhausted: 0, expired: 0, revoked: COUNT }, 'all revoked');
  const used = codes.slice(0, USED);
  t.equal(used.filter((code) => code.used.bytesIn > 0 && code.used.bytesOut > 0).length, USED, 'the used codes have their connections folded in');
  t.equal(used.filter((code) => code.session === null && code.lastEnd?.reason === 'revoked').length, USED, 'no live session named; the last end is the revocation');
  t.equal(codes.slice(USED).filter((code) => code.lastEnd === null && code.used.bytesIn === 0).length, COUNT - USED, 'the unused ones stay untouched but for their status');

  const refused = await eachAtOnce(tokens, async (token) => getHeader(await send('GET', '/rotor/quota', [['Token', token!]]), 'Error'), 32);
  t.equal(refused.filter((error) => error === 'ROTOR_E_SESSION_REVOKED').length, USED, 'every session refuses its newest token');

  // Every tenth code, used and unused alike: a login reads the whole lot record (10,000 ids), ~2 ms each.
  const sample = issued.codes.filter((_, i) => i % 10 === 0);
  const logins = await eachAtOnce(sample, async (code) => getHeader(await send('POST', '/rotor/login', [['Code', code]]), 'Error'), 32);
  t.equal(logins.filter((error) => error === 'ROTOR_E_CODE_REVOKED').length, sample.length, 'a login with any code of the lot, used or not: ROTOR_E_CODE_REVOKED');

  const again = await revokeLot(store, 'front-desk', clock.now + 1, RETENTION);
  t.same([again.codes, again.sessions, again.lot.revokedAt], [0, 0, clock.now], 'again: nothing left to do, the first revocation time kept');
});
