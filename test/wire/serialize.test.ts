import t from 'tap';
import { FrameLimitError, FrameParser, serializeFrame, type Frame, type Header, type RequestFrame, type ResponseFrame } from '../../src/wire/index.ts';
import { DEFAULTS, type WireLimits } from '../../src/config/defaults.ts';
import type { ErrorCode } from '../../src/errors.ts';
import { NO_LIMITS, SMALL_LIMITS, ascii, feed, plain } from './fixtures/helpers.ts';

const request = (over: Partial<RequestFrame> = {}): RequestFrame => ({
  kind: 'request',
  verb: 'GET',
  path: '/x',
  headers: [],
  body: undefined,
  ...over,
});
const response = (over: Partial<ResponseFrame> = {}): ResponseFrame => ({
  kind: 'response',
  status: 200,
  reason: 'OK',
  headers: [],
  body: undefined,
  ...over,
});
const withHeader = (name: string, value: string): RequestFrame => request({ headers: [[name, value]] });

type Asserts = Pick<typeof t, 'equal' | 'strictSame' | 'ok' | 'match'>;

/** Serialize, and check that the bytes parse back to the very same frame (under the same limits). */
function roundTrip(t: Asserts, frame: Frame, what: string, limits: WireLimits = DEFAULTS.wire): Buffer {
  const bytes = serializeFrame(frame, limits);
  const parser = new FrameParser(limits);
  const result = parser.push(bytes);
  t.equal(result.error, undefined, `${what}: parses without error`);
  t.strictSame(result.frames.map(plain), [plain(frame)], `${what}: parses back to the same frame`);
  return bytes;
}

t.test('BIN-Length is written last, after the headers in their order', async (t) => {
  const frame = request({
    verb: 'POST',
    path: '/p',
    headers: [
      ['Zeta', '1'],
      ['alpha', '2'],
    ],
    body: Buffer.from('abc'),
  });
  const bytes = roundTrip(t, frame, 'body frame');
  t.equal(bytes.toString('latin1'), 'POST /p ROTOR/1\r\nZeta: 1\r\nalpha: 2\r\nBIN-Length: 3\r\n\r\nabc');
});

t.test('no body means no BIN-Length; an empty body means BIN-Length: 0', async (t) => {
  t.equal(serializeFrame(response()).toString('latin1'), 'ROTOR/1 200 OK\r\n\r\n');
  t.equal(serializeFrame(response({ body: Buffer.alloc(0) })).toString('latin1'), 'ROTOR/1 200 OK\r\nBIN-Length: 0\r\n\r\n');
  roundTrip(t, response(), 'no body');
  roundTrip(t, response({ body: Buffer.alloc(0) }), 'empty body');
});

t.test('UTF-8 values are written as UTF-8 and BIN-Length counts body bytes, not characters', async (t) => {
  const frame = response({ headers: [['Message', 'Grüße 🚀']], body: Buffer.from('ü', 'utf8') });
  const bytes = roundTrip(t, frame, 'utf8');
  t.equal(bytes.toString('utf8'), 'ROTOR/1 200 OK\r\nMessage: Grüße 🚀\r\nBIN-Length: 2\r\n\r\nü');
});

t.test('values and names at the edges of what is allowed still serialize (the rejections below are not vacuous)', async (t) => {
  roundTrip(t, withHeader('A'.repeat(64), 'v'), '64-character name');
  roundTrip(t, withHeader('a-Z-0-9', 'v'), 'name with digits and dashes');
  roundTrip(t, withHeader('X', 'in\tside'), 'tab inside a value');
  roundTrip(t, withHeader('X', ''), 'empty value');
  roundTrip(t, withHeader('X', 'a\u0080\u00ff\u2028b'), 'C1 and separator characters');
  roundTrip(t, withHeader('X', '😀'), 'a surrogate pair');
  roundTrip(t, request({ verb: 'ABCDEFGHIJKLMNOP' }), '16-letter verb');
  roundTrip(t, request({ verb: 'A' }), '1-letter verb');
  roundTrip(t, request({ path: '/' }), 'root path');
  roundTrip(t, request({ path: '/~!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}' }), 'path with every kind of punctuation');
  roundTrip(t, response({ status: 100, reason: '' }), 'status 100, empty reason');
  roundTrip(t, response({ status: 599, reason: ' spaced  reason ' }), 'status 599, blanks in the reason');
});

t.test('header values that could break a line or not survive a round trip are a TypeError', async (t) => {
  for (const [what, value] of [
    ['CR', 'a\rb'],
    ['LF', 'a\nb'],
    ['CRLF', 'a\r\nInjected: yes'],
    ['trailing CRLF', 'a\r\n'],
    ['NUL', 'a\u0000b'],
    ['DEL', 'a\u007fb'],
    ['ESC', '\u001b[31m'],
    ['leading space', ' a'],
    ['trailing space', 'a '],
    ['leading tab', '\ta'],
    ['trailing tab', 'a\t'],
    ['only a space', ' '],
  ] as const) {
    t.throws(() => serializeFrame(withHeader('X', value)), TypeError, `value with ${what}`);
  }
});

t.test('a lone surrogate in a value is a TypeError (it could not parse back to the same string)', async (t) => {
  for (const [what, value] of [
    ['high surrogate', 'a\ud800b'],
    ['low surrogate', 'a\udc00b'],
    ['high surrogate at the end', 'ab\udbff'],
    ['reversed pair', '\ude00\ud83d'],
  ] as const) {
    t.throws(() => serializeFrame(withHeader('X', value)), TypeError, what);
  }
});

t.test('bad header names are a TypeError', async (t) => {
  for (const [what, name] of [
    ['a space', 'Bad Name'],
    ['a trailing space', 'Name '],
    ['a colon', 'Na:me'],
    ['an underscore', 'Na_me'],
    ['a dot', 'Na.me'],
    ['non-ASCII', 'Naïve'],
    ['a CR', 'Na\rme'],
    ['nothing', ''],
    ['65 characters', 'A'.repeat(65)],
  ] as const) {
    t.throws(() => serializeFrame(withHeader(name, 'v')), TypeError, `name with ${what}`);
  }
});

t.test('an explicit BIN-Length header is a TypeError, in any case, with or without a body', async (t) => {
  for (const name of ['BIN-Length', 'bin-length', 'Bin-Length', 'BIN-LENGTH']) {
    t.throws(() => serializeFrame(withHeader(name, '3')), TypeError, `${name} without a body`);
    t.throws(() => serializeFrame(request({ headers: [[name, '3']], body: Buffer.from('abc') })), TypeError, `${name} with a body`);
  }
});

t.test('duplicate header names (compared case-insensitively) are a TypeError', async (t) => {
  const twice = (a: string, b: string): RequestFrame =>
    request({
      headers: [
        [a, '1'],
        [b, '2'],
      ] as Header[],
    });
  t.throws(() => serializeFrame(twice('Token', 'Token')), TypeError, 'same case');
  t.throws(() => serializeFrame(twice('Token', 'token')), TypeError, 'different case');
  roundTrip(t, twice('Token', 'Tokens'), 'similar but different names are fine');
});

t.test('bad verbs are a TypeError', async (t) => {
  for (const verb of ['', 'get', 'Get', 'G3T', 'GET ', ' GET', 'G-T', 'ABCDEFGHIJKLMNOPQ', 'GÉT', 'GET\r\n']) {
    t.throws(() => serializeFrame(request({ verb })), TypeError, `verb ${JSON.stringify(verb)}`);
  }
});

t.test('bad paths are a TypeError', async (t) => {
  for (const path of ['', 'x', 'x/', '/a b', '/a\r\nX: y', '/ü', '/\u0000', '/\u007f']) {
    t.throws(() => serializeFrame(request({ path })), TypeError, `path ${JSON.stringify(path)}`);
  }
});

t.test('bad statuses and reasons are a TypeError', async (t) => {
  for (const status of [0, 99, 600, 1000, 200.5, Number.NaN, -200]) {
    t.throws(() => serializeFrame(response({ status })), TypeError, `status ${status}`);
  }
  for (const reason of ['O\rK', 'O\nK', 'OK\r\nX: y', 'Grüße', '\u0000', 'tab\there']) {
    t.throws(() => serializeFrame(response({ reason })), TypeError, `reason ${JSON.stringify(reason)}`);
  }
});

t.test('the serializer does not modify the frame it is given', async (t) => {
  const body = Buffer.from('body');
  const headers: Header[] = [['A', '1']];
  const frame = request({ headers, body });
  serializeFrame(frame);
  t.strictSame(headers, [['A', '1']]);
  t.equal(body.toString(), 'body');
  t.equal(frame.body, body);
});

/** The serializer refuses with `code`, and a parser with the same limits refuses the frame's bytes with it too. */
function refused(t: Asserts, frame: Frame, code: ErrorCode, what: string, limits: WireLimits = SMALL_LIMITS): void {
  let error: unknown;
  try {
    serializeFrame(frame, limits);
  } catch (err) {
    error = err;
  }
  t.ok(error instanceof FrameLimitError && error instanceof RangeError, `${what}: a FrameLimitError (a RangeError), not bytes`);
  t.equal((error as FrameLimitError | undefined)?.code, code, `${what}: ${code}`);
  t.match((error as Error | undefined)?.message ?? '', /max(LineBytes|HeaderBytes|Headers|BodyBytes) \(\d+\)/, `${what}: the message names the limit`);
  t.equal(feed([serializeFrame(frame, NO_LIMITS)], limits).pushErrors[0]?.code, code, `${what}: the parser refuses those bytes with the same code`);
}

t.test('at each limit exactly the serializer writes what the parser accepts; one byte more is a FrameLimitError', async (t) => {
  const { maxLineBytes, maxHeaderBytes, maxHeaders, maxBodyBytes } = SMALL_LIMITS;
  const value = (lineLength: number, name = 'X'): string => 'v'.repeat(lineLength - name.length - 2);
  // A line at the limit, counted in bytes: `X: ` and then 2-byte characters.
  const wide = 'é'.repeat((maxLineBytes - 3) / 2 - 0.5) + 'v';
  t.equal(Buffer.byteLength(`X: ${wide}`), maxLineBytes, 'the wide value fills the line to the byte');
  roundTrip(t, withHeader('X', wide), 'a line of exactly maxLineBytes bytes of UTF-8', SMALL_LIMITS);
  refused(t, withHeader('X', `${wide.slice(0, -1)}é`), 'ROTOR_E_LINE_TOO_LONG', 'one byte more, though not one character more');
  roundTrip(t, withHeader('X', value(maxLineBytes)), 'a header line of exactly maxLineBytes', SMALL_LIMITS);
  refused(t, withHeader('X', value(maxLineBytes + 1)), 'ROTOR_E_LINE_TOO_LONG', 'a header line one byte over');
  const path = `/${'p'.repeat(maxLineBytes - 'GET  ROTOR/1'.length - 1)}`;
  roundTrip(t, request({ path }), 'a start line of exactly maxLineBytes', SMALL_LIMITS);
  refused(t, request({ path: `${path}p` }), 'ROTOR_E_LINE_TOO_LONG', 'a start line one byte over');
  refused(t, response({ reason: 'r'.repeat(maxLineBytes) }), 'ROTOR_E_LINE_TOO_LONG', 'a status line over');

  // The block: the start line (14 + CRLF), four lines, the empty line.
  const lines = (last: number): Header[] => [['A', value(60, 'A')], ['B', value(60, 'B')], ['C', value(60, 'C')], ['D', value(last, 'D')]];
  const exact = request({ path: '/', headers: lines(maxHeaderBytes - 15 - 3 * 62 - 2 - 2) });
  t.equal(serializeFrame(exact, NO_LIMITS).length, maxHeaderBytes, 'the block is exactly maxHeaderBytes');
  roundTrip(t, exact, 'a header block of exactly maxHeaderBytes', SMALL_LIMITS);
  refused(t, request({ path: '/', headers: lines(maxHeaderBytes - 15 - 3 * 62 - 2 - 1) }), 'ROTOR_E_HEADERS_TOO_LARGE', 'one byte more');
  refused(t, request({ path: '/', headers: lines(45), body: Buffer.alloc(100) }), 'ROTOR_E_HEADERS_TOO_LARGE', 'one that BIN-Length takes over the limit');
  roundTrip(t, request({ path: '/', headers: lines(45) }), 'the same without a body', SMALL_LIMITS);

  const many = (count: number): Header[] => Array.from({ length: count }, (_, i) => [`H${i}`, 'v'] as Header);
  roundTrip(t, request({ headers: many(maxHeaders) }), 'exactly maxHeaders headers', SMALL_LIMITS);
  roundTrip(t, request({ headers: many(maxHeaders), body: Buffer.from('x') }), 'maxHeaders headers and a body: BIN-Length is not counted', SMALL_LIMITS);
  refused(t, request({ headers: many(maxHeaders + 1) }), 'ROTOR_E_TOO_MANY_HEADERS', 'one header more');

  roundTrip(t, request({ body: Buffer.alloc(maxBodyBytes, 1) }), 'a body of exactly maxBodyBytes', SMALL_LIMITS);
  refused(t, request({ body: Buffer.alloc(maxBodyBytes + 1, 1) }), 'ROTOR_E_BODY_TOO_LARGE', 'one byte more');

  // BIN-Length's own line is a line too: `BIN-Length: 100` is 15 bytes.
  const tiny: WireLimits = { maxLineBytes: 14, maxHeaderBytes: 1000, maxHeaders: 4, maxBodyBytes: 1000 };
  roundTrip(t, request({ path: '/', body: Buffer.alloc(99) }), '`BIN-Length: 99` under a 14-byte line limit', tiny);
  refused(t, request({ path: '/', body: Buffer.alloc(100) }), 'ROTOR_E_LINE_TOO_LONG', '`BIN-Length: 100` over it', tiny);

  // Two limits at once: the one the parser reports, the first in byte order.
  refused(t, request({ headers: [...many(maxHeaders + 1), ['Z', value(maxLineBytes + 1)]] }), 'ROTOR_E_TOO_MANY_HEADERS', 'too many headers before a long line');
  refused(t, request({ headers: [['Z', value(maxLineBytes + 1)], ...many(maxHeaders + 1)] }), 'ROTOR_E_LINE_TOO_LONG', 'a long line before too many headers');
});

t.test('without limits given, serializeFrame holds frames to the defaults, as new FrameParser() does', async (t) => {
  const { maxLineBytes } = DEFAULTS.wire;
  roundTrip(t, withHeader('X', 'v'.repeat(maxLineBytes - 3)), 'a line of exactly the default maxLineBytes');
  refused(t, withHeader('X', 'v'.repeat(maxLineBytes - 2)), 'ROTOR_E_LINE_TOO_LONG', 'one byte more', DEFAULTS.wire);
});

t.test('a header line accepted at the limit writes back within it: `Name:value` counts as `Name: value`', async (t) => {
  const { maxLineBytes } = SMALL_LIMITS;
  const start = 'GET / ROTOR/1\r\n';
  for (const [what, line, accepted] of [
    ['`X: value`, exactly the limit', `X: ${'v'.repeat(maxLineBytes - 3)}`, true],
    ['`X:value`, one byte under as sent, exactly the limit as written', `X:${'v'.repeat(maxLineBytes - 3)}`, true],
    ['`X:value`, exactly the limit as sent, one over as written', `X:${'v'.repeat(maxLineBytes - 2)}`, false],
    ['`X:value ` with a trailing blank, exactly the limit', `X:${'v'.repeat(maxLineBytes - 3)} `, true],
    ['`X:\tvalue`, exactly the limit', `X:\t${'v'.repeat(maxLineBytes - 3)}`, true],
  ] as const) {
    const run = feed([ascii(`${start}${line}\r\n\r\n`)], SMALL_LIMITS);
    if (!accepted) {
      t.strictSame(run.pushErrors.map((e) => e.code), ['ROTOR_E_LINE_TOO_LONG'], `${what}: refused`);
      continue;
    }
    t.equal(run.outcome, 'clean', `${what}: accepted`);
    const again = serializeFrame(run.frames[0]!, SMALL_LIMITS);
    t.equal(again.toString('latin1').split('\r\n')[1], `X: ${'v'.repeat(maxLineBytes - 3)}`, `${what}: written as \`X: value\`, exactly the limit`);
    t.strictSame(feed([again], SMALL_LIMITS).frames.map(plain), run.frames.map(plain), `${what}: and read back the same`);
  }
});
