import t, { type Test } from 'tap';
import { FrameParser } from '../../src/wire/index.ts';
import { DEFAULTS, type WireLimits } from '../../src/config/defaults.ts';
import type { ErrorCode } from '../../src/errors.ts';
import { SMALL_LIMITS, ascii, bytewise, feed, plain, splitAt } from './fixtures/helpers.ts';

const START = 'GET / ROTOR/1\r\n';
const VALID = ascii('PING /ok ROTOR/1\r\nA: 1\r\n\r\n');
const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');
const pad = (n: number): string => 'v'.repeat(n);
/** Three header lines of 60 bytes before their CRLF: with START, 201 bytes of SMALL_LIMITS' 256. */
const FILL_3_LINES = ['A', 'B', 'C'].map((name) => `${name}: ${pad(57)}\r\n`).join('');
/** Exactly SMALL_LIMITS.maxHeaders headers. */
const FOUR_HEADERS = 'A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n';

interface Case {
  name: string;
  bytes: Buffer;
  code: ErrorCode;
  limits?: WireLimits;
}

/**
 * Each input has exactly one defect, so its error code must not depend on how the bytes are
 * cut into chunks: checked in one chunk, one byte at a time, and at every split point.
 */
const CASES: Case[] = [
  // --- start line ---
  { name: 'garbage start line', bytes: ascii('HELLO\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'binary garbage start line', bytes: Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x0d, 0x0a]), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'empty start line', bytes: ascii('\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'lower-case verb', bytes: ascii('get / ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: '17-letter verb', bytes: ascii('ABCDEFGHIJKLMNOPQ / ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'verb with a digit', bytes: ascii('G3T / ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'path without leading slash', bytes: ascii('GET x ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'path with a space', bytes: ascii('GET /a b ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'no path', bytes: ascii('GET ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'two spaces after the verb', bytes: ascii('GET  / ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'non-ASCII path', bytes: utf8('GET /ü ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'control character in the path', bytes: ascii('GET /a\x01 ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'status out of range', bytes: ascii('ROTOR/1 600 Nope\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'two-digit status', bytes: ascii('ROTOR/1 20 OK\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  { name: 'status without the space before the reason', bytes: ascii('ROTOR/1 200\r\n\r\n'), code: 'ROTOR_E_BAD_START_LINE' },
  // --- version ---
  { name: 'HTTP/1.1 request line', bytes: ascii('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n'), code: 'ROTOR_E_BAD_VERSION' },
  { name: 'ROTOR/2 request', bytes: ascii('GET / ROTOR/2\r\n\r\n'), code: 'ROTOR_E_BAD_VERSION' },
  { name: 'ROTOR/1.1 response', bytes: ascii('ROTOR/1.1 200 OK\r\n\r\n'), code: 'ROTOR_E_BAD_VERSION' },
  { name: 'ROTOR/2 response', bytes: ascii('ROTOR/2 200 OK\r\n\r\n'), code: 'ROTOR_E_BAD_VERSION' },
  // --- header lines ---
  { name: 'header without colon', bytes: ascii(`${START}NoColonHere\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'empty header name', bytes: ascii(`${START}: value\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'header name with a space', bytes: ascii(`${START}Bad Name: v\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'header name with an underscore', bytes: ascii(`${START}X_Y: v\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'header name with non-ASCII', bytes: utf8(`${START}Naïve: v\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'blank before the colon', bytes: ascii(`${START}Name : v\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'header name of 65 characters', bytes: ascii(`${START}${'N'.repeat(65)}: v\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'folded (continuation) header line', bytes: ascii(`${START}A: 1\r\n folded\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'control character (0x01) in a value', bytes: ascii(`${START}X: a\x01b\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'NUL in a value', bytes: ascii(`${START}X: a\x00b\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'ESC in a value', bytes: ascii(`${START}X: \x1b[31m\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'DEL in a value', bytes: ascii(`${START}X: a\x7f\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'invalid UTF-8 (0xFF) in a value', bytes: Buffer.concat([ascii(`${START}X: a`), Buffer.from([0xff]), ascii('\r\n\r\n')]), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'overlong UTF-8 in a value', bytes: Buffer.concat([ascii(`${START}X: `), Buffer.from([0xc0, 0xaf]), ascii('\r\n\r\n')]), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'UTF-8-encoded surrogate in a value', bytes: Buffer.concat([ascii(`${START}X: `), Buffer.from([0xed, 0xa0, 0x80]), ascii('\r\n\r\n')]), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'truncated UTF-8 sequence in a value', bytes: Buffer.concat([ascii(`${START}X: a`), Buffer.from([0xe2, 0x82]), ascii('\r\n\r\n')]), code: 'ROTOR_E_BAD_HEADER' },
  { name: 'duplicate header, different case', bytes: ascii(`${START}Token: a\r\ntoken: b\r\n\r\n`), code: 'ROTOR_E_DUPLICATE_HEADER' },
  { name: 'duplicate header, same case', bytes: ascii(`${START}Token: a\r\nOther: x\r\nToken: a\r\n\r\n`), code: 'ROTOR_E_DUPLICATE_HEADER' },
  { name: 'duplicate BIN-Length', bytes: ascii(`${START}BIN-Length: 1\r\nbin-length: 1\r\n\r\nx`), code: 'ROTOR_E_DUPLICATE_HEADER' },
  // --- line endings ---
  { name: 'bare LF at the very start', bytes: ascii('\n'), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare LF after the start line', bytes: ascii('GET / ROTOR/1\n\r\n'), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare LF after a header', bytes: ascii(`${START}X: a\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare LF as the empty line', bytes: ascii(`${START}X: a\r\n\n`), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare CR inside the start line', bytes: ascii('GET /a\rb ROTOR/1\r\n\r\n'), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare CR inside a value', bytes: ascii(`${START}X: a\rb\r\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'CR CR LF after a value', bytes: ascii(`${START}X: a\r\r\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare CR inside a header name', bytes: ascii(`${START}X\rY: b\r\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare CR in a header line without colon', bytes: ascii(`${START}abc\rdef\r\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare CR as the empty line', bytes: ascii(`${START}\r\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING' },
  { name: 'bare CR with no LF anywhere after it', bytes: ascii('GET / ROTOR/1\rX-No-LF-ever'), code: 'ROTOR_E_BAD_LINE_ENDING' },
  // --- BIN-Length ---
  { name: 'BIN-Length with a plus sign', bytes: ascii(`${START}BIN-Length: +5\r\n\r\nabcde`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length with a minus sign', bytes: ascii(`${START}BIN-Length: -5\r\n\r\nabcde`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length with a space inside', bytes: ascii(`${START}BIN-Length: 1 0\r\n\r\n0123456789`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length with a tab inside', bytes: ascii(`${START}BIN-Length: 1\t0\r\n\r\n0123456789`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length with 20 digits', bytes: ascii(`${START}BIN-Length: 12345678901234567890\r\n\r\n`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length with 16 digits', bytes: ascii(`${START}BIN-Length: 1000000000000000\r\n\r\n`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length with a leading zero', bytes: ascii(`${START}BIN-Length: 05\r\n\r\nabcde`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length of 00', bytes: ascii(`${START}BIN-Length: 00\r\n\r\n`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length empty', bytes: ascii(`${START}BIN-Length:\r\n\r\n`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length in hex', bytes: ascii(`${START}BIN-Length: 0x5\r\n\r\nabcde`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length in exponent form', bytes: ascii(`${START}BIN-Length: 1e1\r\n\r\n0123456789`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length with a decimal point', bytes: ascii(`${START}BIN-Length: 5.0\r\n\r\nabcde`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length in full-width digits', bytes: utf8(`${START}BIN-Length: ５\r\n\r\nabcde`), code: 'ROTOR_E_BAD_LENGTH' },
  { name: 'BIN-Length of 15 nines (well-formed, too large)', bytes: ascii(`${START}BIN-Length: 999999999999999\r\n\r\nabc`), code: 'ROTOR_E_BODY_TOO_LARGE' },
  { name: 'BIN-Length one over maxBodyBytes', bytes: ascii(`${START}BIN-Length: ${DEFAULTS.wire.maxBodyBytes + 1}\r\n\r\nabc`), code: 'ROTOR_E_BODY_TOO_LARGE' },
  // --- limits (small, so every split point stays cheap) ---
  { name: 'start line one byte over maxLineBytes', bytes: ascii(`GET /${'p'.repeat(SMALL_LIMITS.maxLineBytes - 12)} ROTOR/1\r\n\r\n`), code: 'ROTOR_E_LINE_TOO_LONG', limits: SMALL_LIMITS },
  { name: 'header line one byte over maxLineBytes', bytes: ascii(`${START}X: ${'v'.repeat(SMALL_LIMITS.maxLineBytes - 2)}\r\n\r\n`), code: 'ROTOR_E_LINE_TOO_LONG', limits: SMALL_LIMITS },
  { name: 'one header more than maxHeaders', bytes: ascii(`${START}A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n`), code: 'ROTOR_E_TOO_MANY_HEADERS', limits: SMALL_LIMITS },
  { name: 'body one byte over maxBodyBytes', bytes: ascii(`${START}BIN-Length: ${SMALL_LIMITS.maxBodyBytes + 1}\r\n\r\n`), code: 'ROTOR_E_BODY_TOO_LARGE', limits: SMALL_LIMITS },
  // A header line counts as the longer of its form as sent and `Name: value` (as rotor writes it).
  { name: '`Name:value` of exactly maxLineBytes (as `Name: value` one over)', bytes: ascii(`${START}X:${pad(SMALL_LIMITS.maxLineBytes - 2)}\r\n\r\n`), code: 'ROTOR_E_LINE_TOO_LONG', limits: SMALL_LIMITS },
  { name: '`Name:` with an empty value, exactly maxLineBytes', bytes: ascii(`${START}${'N'.repeat(SMALL_LIMITS.maxLineBytes - 1)}:\r\n\r\n`), code: 'ROTOR_E_LINE_TOO_LONG', limits: SMALL_LIMITS },
  { name: 'header block of exactly maxHeaderBytes whose last line is `Name:value`', bytes: ascii(`${START}${FILL_3_LINES}D:${pad(49)}\r\n\r\n`), code: 'ROTOR_E_HEADERS_TOO_LARGE', limits: SMALL_LIMITS },
];

/**
 * Inputs that break two rules. The error is the rule broken first in byte order, judged as if
 * the bytes arrived one at a time; at the same byte: line ending, then line length, then block
 * size, then what a complete line says (its form, a duplicate, BIN-Length, the header count).
 */
const TWO_DEFECTS: Case[] = [
  { name: 'bare CR early in a line that is also too long', bytes: ascii(`${START}X: a\rb${pad(80)}\r\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING', limits: SMALL_LIMITS },
  { name: 'bare CR in a line already too long', bytes: ascii(`${START}X: ${pad(70)}\rb\r\n\r\n`), code: 'ROTOR_E_LINE_TOO_LONG', limits: SMALL_LIMITS },
  { name: 'bare CR as byte maxLineBytes + 1: the byte after it breaks both rules', bytes: ascii(`${START}X: ${pad(SMALL_LIMITS.maxLineBytes - 3)}\rb\r\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING', limits: SMALL_LIMITS },
  { name: 'bare CR early in a line where the block overflows', bytes: ascii(`${START}${FILL_3_LINES}X: a\rb${pad(50)}\r\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING', limits: SMALL_LIMITS },
  { name: 'bare CR after the block overflowed', bytes: ascii(`${START}${FILL_3_LINES}X: ${pad(53)}\rb\r\n\r\n`), code: 'ROTOR_E_HEADERS_TOO_LARGE', limits: SMALL_LIMITS },
  { name: 'bare LF as the byte that overflows the block', bytes: ascii(`${START}${FILL_3_LINES}X: ${pad(52)}\n\r\n`), code: 'ROTOR_E_BAD_LINE_ENDING', limits: SMALL_LIMITS },
  { name: 'block overflows before the line is too long', bytes: ascii(`${START}${FILL_3_LINES}X: ${pad(80)}\r\n\r\n`), code: 'ROTOR_E_HEADERS_TOO_LARGE', limits: SMALL_LIMITS },
  { name: 'line too long before the block overflows', bytes: ascii(`${START}X: ${pad(250)}\r\n\r\n`), code: 'ROTOR_E_LINE_TOO_LONG', limits: SMALL_LIMITS },
  { name: 'start line too long and of another version', bytes: ascii(`GET /${'p'.repeat(70)} HTTP/1.1\r\n\r\n`), code: 'ROTOR_E_LINE_TOO_LONG', limits: SMALL_LIMITS },
  { name: '`Name:value` of exactly maxLineBytes with a bad name', bytes: ascii(`${START}X_Y:${pad(SMALL_LIMITS.maxLineBytes - 4)}\r\n\r\n`), code: 'ROTOR_E_LINE_TOO_LONG', limits: SMALL_LIMITS },
  { name: 'one header too many, and malformed', bytes: ascii(`${START}${FOUR_HEADERS}no colon\r\n\r\n`), code: 'ROTOR_E_BAD_HEADER', limits: SMALL_LIMITS },
  { name: 'one header too many, and a duplicate', bytes: ascii(`${START}${FOUR_HEADERS}a: 5\r\n\r\n`), code: 'ROTOR_E_DUPLICATE_HEADER', limits: SMALL_LIMITS },
  { name: 'BIN-Length over the body limit after maxHeaders headers (it does not count)', bytes: ascii(`${START}${FOUR_HEADERS}BIN-Length: ${SMALL_LIMITS.maxBodyBytes + 1}\r\n\r\n`), code: 'ROTOR_E_BODY_TOO_LARGE', limits: SMALL_LIMITS },
];

function checkEveryChunking(t: Test, c: Case): void {
  {
    const expected = { outcome: 'error', codes: [c.code], frames: 0, framesAfterError: 0 };
    const summarize = (chunks: Buffer[], prefix = 0) => {
      const run = feed(chunks, c.limits);
      return { outcome: run.outcome, codes: run.pushErrors.map((e) => e.code), frames: run.frames.length - prefix, framesAfterError: run.framesAfterError };
    };
    t.strictSame(summarize([c.bytes]), expected, `${c.name}: one chunk`);
    t.strictSame(summarize(bytewise(c.bytes)), expected, `${c.name}: byte by byte`);
    const badCuts: number[] = [];
    for (let cut = 1; cut < c.bytes.length; cut++) {
      if (JSON.stringify(summarize(splitAt(c.bytes, [cut]))) !== JSON.stringify(expected)) badCuts.push(cut);
    }
    t.strictSame(badCuts, [], `${c.name}: every split point`);
    // A good frame before the bad one is still delivered; input after the error is ignored.
    const withNeighbours = Buffer.concat([VALID, c.bytes, VALID]);
    const run = feed([withNeighbours], c.limits);
    t.strictSame(
      { codes: run.pushErrors.map((e) => e.code), frames: run.frames.map(plain) },
      { codes: [c.code], frames: feed([VALID]).frames.map(plain) },
      `${c.name}: the frame before it is delivered, the one after is not`,
    );
  }
}

t.test('each hostile input gives its exact error code, however it is chunked', async (t) => {
  for (const c of CASES) checkEveryChunking(t, c);
});

t.test('an input that breaks two rules gives the same one code however it is chunked: the first in byte order', async (t) => {
  t.equal(FILL_3_LINES.length + START.length, 201, 'the filler leaves 55 bytes of the block');
  for (const c of TWO_DEFECTS) checkEveryChunking(t, c);
});

t.test('a bare CR is reported as soon as the byte after it arrives, not at the next LF', async (t) => {
  const parser = new FrameParser();
  t.equal(parser.push(ascii('GET /a\r')).error, undefined, 'a trailing CR may still get its LF');
  t.equal(parser.push(ascii('b')).error?.code, 'ROTOR_E_BAD_LINE_ENDING');
});

t.test('a 10 MB header line in 64 KiB chunks fails on the first chunk, holding less than a line', async (t) => {
  const CHUNK = 64 * 1024;
  const limits = DEFAULTS.wire;
  const parser = new FrameParser(limits);
  let consumed = 0;
  let maxBuffered = 0;
  let code: string | undefined;
  parser.push(ascii(`${START}X-Big: `));
  const chunk = Buffer.alloc(CHUNK, 0x61);
  for (let sent = 0; sent < 10 * 1024 * 1024; sent += CHUNK) {
    consumed += CHUNK;
    const result = parser.push(chunk);
    maxBuffered = Math.max(maxBuffered, parser.bufferedBytes);
    if (result.error) {
      code = result.error.code;
      break;
    }
  }
  t.equal(code, 'ROTOR_E_LINE_TOO_LONG');
  t.ok(consumed <= limits.maxLineBytes + CHUNK, `failed after ${consumed} bytes`);
  t.ok(maxBuffered <= limits.maxLineBytes + 1, `held at most ${maxBuffered} bytes`);
});

t.test('a 10 MB block of short header lines in 64 KiB chunks fails early, holding little', async (t) => {
  const CHUNK = 64 * 1024;
  // Raise the count limit so the byte limit is what stops it (with the default count, see below).
  const limits: WireLimits = { ...DEFAULTS.wire, maxHeaders: 1_000_000 };
  const lines: string[] = [START];
  let size = START.length;
  for (let i = 0; size < 10 * 1024 * 1024; i++) {
    const line = `H${i}: ${'x'.repeat(20)}\r\n`;
    lines.push(line);
    size += line.length;
  }
  const block = ascii(lines.join(''));
  t.ok(block.length >= 10 * 1024 * 1024, 'the block really is 10 MB');
  const chunks: Buffer[] = [];
  for (let at = 0; at < block.length; at += CHUNK) chunks.push(block.subarray(at, at + CHUNK));

  const run = feed(chunks, limits);
  t.strictSame(run.pushErrors.map((e) => e.code), ['ROTOR_E_HEADERS_TOO_LARGE']);
  t.ok(run.consumedAtError! <= limits.maxHeaderBytes + CHUNK, `failed after ${run.consumedAtError} bytes`);
  t.ok(run.maxBuffered <= limits.maxLineBytes + 1, `held at most ${run.maxBuffered} bytes`);
  t.equal(run.framesAfterError, 0);

  const byCount = feed(chunks, DEFAULTS.wire);
  t.strictSame(byCount.pushErrors.map((e) => e.code), ['ROTOR_E_TOO_MANY_HEADERS'], 'the default count limit stops it first');
  t.ok(byCount.consumedAtError! <= CHUNK, 'within the first chunk');
});

t.test('a header line that grows one byte at a time fails as soon as it is too long', async (t) => {
  const limits = SMALL_LIMITS;
  const parser = new FrameParser(limits);
  parser.push(ascii(`${START}X: `));
  let pushed = 3; // bytes of the line so far
  let code: string | undefined;
  while (pushed < 10_000) {
    const result = parser.push(ascii('y'));
    pushed++;
    t.ok(parser.bufferedBytes <= limits.maxLineBytes + 1 || result.error !== undefined, 'never holds more than a line');
    if (result.error) {
      code = result.error.code;
      break;
    }
  }
  t.equal(code, 'ROTOR_E_LINE_TOO_LONG');
  t.ok(pushed <= limits.maxLineBytes + 2, `failed at line byte ${pushed}`);
});

t.test('exactly maxHeaders headers are accepted, one more is ROTOR_E_TOO_MANY_HEADERS', async (t) => {
  const max = DEFAULTS.wire.maxHeaders;
  const block = (count: number): Buffer => {
    let text = START;
    for (let i = 0; i < count; i++) text += `H${i}: ${i}\r\n`;
    return ascii(`${text}\r\n`);
  };
  const ok = feed([block(max)]);
  t.equal(ok.outcome, 'clean');
  t.equal(ok.frames[0]?.headers.length, max);
  const tooMany = feed([block(max + 1)]);
  t.strictSame(tooMany.pushErrors.map((e) => e.code), ['ROTOR_E_TOO_MANY_HEADERS']);
  const wayTooMany = feed(bytewise(block(10 * max)));
  t.strictSame(wayTooMany.pushErrors.map((e) => e.code), ['ROTOR_E_TOO_MANY_HEADERS'], 'many more, byte by byte');
  t.ok(wayTooMany.consumedAtError! < block(max + 2).length, 'reported at the first header too many');
});

t.test('BIN-Length does not count toward maxHeaders, wherever it stands', async (t) => {
  const max = SMALL_LIMITS.maxHeaders;
  const block = (count: number, at: number): Buffer => {
    const lines = Array.from({ length: count }, (_, i) => `H${i}: ${i}\r\n`);
    lines.splice(at, 0, 'BIN-Length: 2\r\n');
    return ascii(`${START}${lines.join('')}\r\nok`);
  };
  const accepted: number[] = [];
  const refused: number[] = [];
  for (let at = 0; at <= max + 1; at++) {
    if (at <= max) {
      for (const [how, chunks] of [['one chunk', [block(max, at)]], ['byte by byte', bytewise(block(max, at))]] as const) {
        const run = feed(chunks, SMALL_LIMITS);
        if (run.outcome === 'clean' && run.frames[0]?.headers.length === max && run.frames[0]?.body?.toString() === 'ok') accepted.push(at);
        else t.fail(`${max} headers, BIN-Length at ${at} (${how}): ${run.pushErrors[0]?.code ?? run.outcome}`);
      }
    }
    for (const chunks of [[block(max + 1, at)], bytewise(block(max + 1, at))]) {
      const run = feed(chunks, SMALL_LIMITS);
      if (run.pushErrors.length === 1 && run.pushErrors[0]?.code === 'ROTOR_E_TOO_MANY_HEADERS') refused.push(at);
      else t.fail(`${max + 1} headers, BIN-Length at ${at}: ${run.pushErrors[0]?.code ?? run.outcome}`);
    }
  }
  /** Every position, once per way of chunking. */
  const positions = (count: number): number[] => Array.from({ length: count }, (_, at) => [at, at]).flat();
  t.strictSame(accepted, positions(max + 1), `maxHeaders headers and BIN-Length at each of the ${max + 1} positions: accepted`);
  t.strictSame(refused, positions(max + 2), `maxHeaders + 1 headers and BIN-Length at each of the ${max + 2} positions: refused`);
});

t.test('line and header-block limits are inclusive', async (t) => {
  const limits = SMALL_LIMITS;
  const line = (name: string, total: number): string => `${name}: ${'v'.repeat(total - name.length - 4)}\r\n`; // total incl. CRLF
  const longest = ascii(`${START}${line('X', limits.maxLineBytes + 2)}\r\n`);
  for (const [how, chunks] of [['one chunk', [longest]], ['byte by byte', bytewise(longest)]] as const) {
    const run = feed(chunks, limits);
    t.equal(run.outcome, 'clean', `a line of exactly maxLineBytes is fine (${how})`);
    t.equal(run.frames.length, 1);
  }
  // START (15) + four header lines + final CRLF (2) = maxHeaderBytes (256).
  const rest = limits.maxHeaderBytes - START.length - 2; // 239
  const exact = ascii(START + line('A', 60) + line('B', 60) + line('C', 60) + line('D', rest - 180) + '\r\n');
  t.equal(exact.length, limits.maxHeaderBytes, 'the block is exactly maxHeaderBytes');
  const overBy1 = ascii(START + line('A', 60) + line('B', 60) + line('C', 60) + line('D', rest - 179) + '\r\n');
  for (const [how, split] of [['one chunk', (b: Buffer) => [b]], ['byte by byte', bytewise]] as const) {
    const fine = feed(split(exact), limits);
    t.equal(fine.outcome, 'clean', `a header block of exactly maxHeaderBytes is fine (${how})`);
    t.equal(fine.frames.length, 1);
    const over = feed(split(overBy1), limits);
    t.strictSame(over.pushErrors.map((e) => e.code), ['ROTOR_E_HEADERS_TOO_LARGE'], `one byte more is not (${how})`);
  }
  const body = Buffer.alloc(limits.maxBodyBytes, 0x0a);
  const maxBody = feed([ascii(`${START}BIN-Length: ${limits.maxBodyBytes}\r\n\r\n`), body], limits);
  t.equal(maxBody.outcome, 'clean', 'a body of exactly maxBodyBytes is fine');
  t.ok(maxBody.frames[0]?.body?.equals(body));
});

t.test('BIN-Length over the limit fails when its line is read, before any body byte is held', async (t) => {
  const limits = DEFAULTS.wire;
  const tooBig = limits.maxBodyBytes + 1;

  // The BIN-Length line completes the push: the error comes before the empty line, let alone the body.
  const parser = new FrameParser(limits);
  t.equal(parser.push(ascii(`PUT /up ROTOR/1\r\nBIN-Length: ${String(tooBig).slice(0, 3)}`)).error, undefined, 'half a length is no error yet');
  const result = parser.push(ascii(`${String(tooBig).slice(3)}\r\n`));
  t.equal(result.error?.code, 'ROTOR_E_BODY_TOO_LARGE');
  t.equal(parser.bufferedBytes, 0);
  t.strictSame(parser.push(Buffer.alloc(1000)), { frames: [] }, 'the body that follows is ignored');
  t.equal(parser.bufferedBytes, 0, 'and not buffered');

  // Header block and a megabyte of body in one chunk: nothing of the body is kept.
  const oneChunk = new FrameParser(limits);
  const all = Buffer.concat([ascii(`PUT /up ROTOR/1\r\nBIN-Length: ${tooBig}\r\n\r\n`), Buffer.alloc(tooBig, 0x42)]);
  const r = oneChunk.push(all);
  t.equal(r.error?.code, 'ROTOR_E_BODY_TOO_LARGE');
  t.equal(r.frames.length, 0);
  t.equal(oneChunk.bufferedBytes, 0);
  t.equal(oneChunk.midFrame, false, 'nothing is held for the refused frame');
});

t.test('a body cut short and then end() is ROTOR_E_TRUNCATED', async (t) => {
  const parser = new FrameParser();
  const result = parser.push(ascii(`${START}BIN-Length: 10\r\n\r\n12345`));
  t.equal(result.error, undefined);
  t.equal(result.frames.length, 0);
  t.equal(parser.bufferedBytes, 5, 'five body bytes held');
  const err = parser.end();
  t.equal(err?.code, 'ROTOR_E_TRUNCATED');
  t.equal(err?.fatal, true);
  t.equal(parser.bufferedBytes, 0, 'released');
  t.equal(parser.end(), undefined, 'said once');
});

t.test('100 000 tiny frames in one buffer are all parsed', async (t) => {
  const N = 100_000;
  const request = ascii('A / ROTOR/1\r\n\r\n');
  const response = ascii('ROTOR/1 200 \r\nBIN-Length: 0\r\n\r\n');
  const parts: Buffer[] = [];
  for (let i = 0; i < N; i++) parts.push(i % 2 === 0 ? request : response);
  const parser = new FrameParser();
  const result = parser.push(Buffer.concat(parts));
  t.equal(result.error, undefined);
  t.equal(result.frames.length, N);
  let wrong = 0;
  for (let i = 0; i < N; i++) {
    const f = result.frames[i]!;
    const ok =
      i % 2 === 0
        ? f.kind === 'request' && f.verb === 'A' && f.path === '/' && f.body === undefined && f.headers.length === 0
        : f.kind === 'response' && f.status === 200 && f.reason === '' && f.body?.length === 0 && f.headers.length === 0;
    if (!ok) wrong++;
  }
  t.equal(wrong, 0, 'every frame is the one sent, in order');
  t.equal(parser.midFrame, false);
  t.equal(parser.end(), undefined);
});

t.test('the error is reported once; later pushes return no frames and no error', async (t) => {
  const parser = new FrameParser();
  const first = parser.push(Buffer.concat([VALID, ascii('GET / HTTP/1.1\r\n\r\n'), VALID]));
  t.equal(first.frames.length, 1, 'the frame before the error');
  t.equal(first.error?.code, 'ROTOR_E_BAD_VERSION');
  t.equal(parser.failed, first.error, 'remembered');
  for (let i = 0; i < 3; i++) {
    const later = parser.push(i === 1 ? ascii('garbage\n') : VALID);
    t.strictSame(later.frames, [], `push ${i + 2}: no frames`);
    t.equal(later.error, undefined, `push ${i + 2}: no second error`);
  }
  t.equal(parser.end(), undefined, 'end() does not report it again');
  t.equal(parser.failed, first.error, 'still the first error');
  t.equal(parser.bufferedBytes, 0);
});
