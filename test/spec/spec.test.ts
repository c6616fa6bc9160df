import t from 'tap';
import { readFileSync } from 'node:fs';
import { ERRORS, REASONS, reasonFor } from '../../src/errors.ts';
import { DEFAULTS } from '../../src/config/defaults.ts';
import { FrameParser, serializeFrame } from '../../src/wire/index.ts';
import { httpTranscript, showHttp, transcript, wireBytes } from './transcript.ts';

const spec = readFileSync(new URL('../../spec.md', import.meta.url), 'utf8');
const blocks = [...spec.matchAll(/```rotor\n([\s\S]*?)\n```/g)].map((m) => m[1]);

t.test('every example block is one frame that re-serializes byte for byte', async (t) => {
  t.ok(blocks.length >= 20, `found ${blocks.length} example frames`);
  for (const [i, block] of blocks.entries()) {
    const bytes = wireBytes(block);
    const { frames, error } = new FrameParser().push(bytes);
    t.equal(error, undefined, `block ${i} parses`);
    t.equal(frames.length, 1, `block ${i} is one frame`);
    t.same(serializeFrame(frames[0]), bytes, `block ${i} re-serializes identically`);
  }
});

t.test('the examples are what a real rotor sends and answers', async (t) => {
  const exchanges = await transcript();
  t.equal(blocks.length, exchanges.length * 2, 'one request and one reply block per exchange');
  exchanges.forEach((exchange, i) => {
    t.equal(wireBytes(blocks[2 * i]).toString('latin1'), exchange.request.toString('latin1'), `${exchange.title}: request`);
    t.equal(wireBytes(blocks[2 * i + 1]).toString('latin1'), exchange.response.toString('latin1'), `${exchange.title}: reply`);
  });
});

t.test('the HTTP examples are what the HTTP listener sends and answers', async (t) => {
  const httpBlocks = [...spec.matchAll(/```http\n([\s\S]*?)\n```/g)].map((m) => m[1]);
  const exchanges = await httpTranscript();
  t.ok(exchanges.length >= 5, 'examples over HTTP exist');
  t.equal(httpBlocks.length, exchanges.length * 2, 'one request and one response block per exchange');
  exchanges.forEach((exchange, i) => {
    t.equal(httpBlocks[2 * i], showHttp(exchange.request), `${exchange.title}: request`);
    t.equal(httpBlocks[2 * i + 1], showHttp(exchange.response), `${exchange.title}: response`);
  });
});

t.test('every error code is in spec.md with its status, and nothing else is', async (t) => {
  for (const [code, { status }] of Object.entries(ERRORS)) {
    t.match(spec, new RegExp(`\\| \`${code}\` \\| ${status} \\|`), `${code} ${status}`);
  }
  const listed = [...spec.matchAll(/\| `(ROTOR_E_[A-Z_]+)` \| \d{3} \|/g)].map((m) => m[1]);
  for (const code of listed) t.ok(code in ERRORS, `${code} in spec.md exists`);
  for (const code of new Set(spec.match(/ROTOR_E_[A-Z_]+/g))) t.ok(code in ERRORS, `${code} mentioned in spec.md exists`);
});

t.test('the limits table shows the defaults', async (t) => {
  const sections = DEFAULTS as unknown as Record<string, Record<string, unknown>>;
  const rows = [...spec.matchAll(/\| `(\w+)\.(\w+)` \| (-?\d+) \|/g)];
  t.ok(rows.length >= 10, 'limits listed');
  for (const [, section, key, value] of rows) {
    t.equal(String(sections[section]?.[key]), value, `${section}.${key}`);
  }
});

t.test('§1 lists exactly the reason phrases rotor sends', async (t) => {
  const bullet = /- \*\*Reason phrase\.\*\*([\s\S]*?)\n- \*\*/.exec(spec)?.[1] ?? '';
  const listed = Object.fromEntries([...bullet.matchAll(/(\d{3}) `([^`]+)`/g)].map(([, status, reason]) => [status, reason]));
  t.strictSame(listed, Object.fromEntries(Object.entries(REASONS)), 'status by status');
  t.match(bullet, /`OK` below 400 and `Error` from 400 up/, 'and what any other status gets');
  t.strictSame([reasonFor(299), reasonFor(418)], ['OK', 'Error'], 'which is what it sends');
});
