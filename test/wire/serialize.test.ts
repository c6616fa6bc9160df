import t from 'tap';
import { FrameParser, serializeFrame, type Frame, type Header, type RequestFrame, type ResponseFrame } from '../../src/wire/index.ts';
import { plain } from './fixtures/helpers.ts';

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

type Asserts = Pick<typeof t, 'equal' | 'strictSame'>;

/** Serialize, and check that the bytes parse back to the very same frame. */
function roundTrip(t: Asserts, frame: Frame, what: string): Buffer {
  const bytes = serializeFrame(frame);
  const parser = new FrameParser();
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
