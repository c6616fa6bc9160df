import t from 'tap';
import { FrameParser, getHeader, serializeFrame, type Frame } from '../../src/wire/index.ts';
import { DEFAULTS } from '../../src/config/defaults.ts';
import { ALL_BYTES, ALL_FRAMES, FIXTURES } from './fixtures/frames.ts';
import { ascii, bytewise, feed, plain, splitAt } from './fixtures/helpers.ts';

t.test('each fixture parses to exactly its frame, in one chunk', async (t) => {
  for (const fixture of FIXTURES) {
    const parser = new FrameParser();
    const result = parser.push(fixture.bytes);
    t.equal(result.error, undefined, `${fixture.name}: no error`);
    t.equal(result.frames.length, 1, `${fixture.name}: one frame`);
    t.strictSame(result.frames.map(plain), [plain(fixture.frame)], `${fixture.name}: the expected frame`);
    const body = result.frames[0]?.body;
    if (fixture.frame.body === undefined) {
      t.equal(body, undefined, `${fixture.name}: no BIN-Length, so body is undefined`);
    } else {
      t.ok(Buffer.isBuffer(body), `${fixture.name}: body is a Buffer`);
      t.equal(body?.length, fixture.frame.body.length, `${fixture.name}: body length`);
    }
    t.notOk(
      result.frames[0]?.headers.some(([name]) => name.toLowerCase() === 'bin-length'),
      `${fixture.name}: BIN-Length is not left among the headers`,
    );
    t.equal(parser.bufferedBytes, 0, `${fixture.name}: nothing buffered after a whole frame`);
    t.equal(parser.midFrame, false, `${fixture.name}: not mid-frame`);
    t.equal(parser.end(), undefined, `${fixture.name}: a clean end`);
  }
});

t.test('each fixture frame serializes to exactly its bytes', async (t) => {
  for (const fixture of FIXTURES) {
    const bytes = serializeFrame(fixture.frame);
    t.ok(Buffer.isBuffer(bytes), `${fixture.name}: a Buffer`);
    t.equal(bytes.toString('hex'), fixture.bytes.toString('hex'), `${fixture.name}: byte-exact`);
  }
});

t.test('the fixtures back to back parse to all frames, in order', async (t) => {
  const run = feed([ALL_BYTES]);
  t.equal(run.outcome, 'clean');
  t.strictSame(run.frames.map(plain), ALL_FRAMES.map(plain));
  t.equal(
    Buffer.concat(run.frames.map((f) => serializeFrame(f))).toString('hex'),
    ALL_BYTES.toString('hex'),
    'and serialize back to the same stream',
  );
});

t.test('one byte at a time gives the same frames', async (t) => {
  for (const fixture of FIXTURES) {
    const run = feed(bytewise(fixture.bytes));
    t.equal(run.outcome, 'clean', `${fixture.name}: clean`);
    t.strictSame(run.frames.map(plain), [plain(fixture.frame)], fixture.name);
  }
  const run = feed(bytewise(ALL_BYTES));
  t.equal(run.outcome, 'clean', 'whole stream: clean');
  t.strictSame(run.frames.map(plain), ALL_FRAMES.map(plain), 'whole stream: all frames in order');
});

t.test('every split point into two pieces gives the same frames (mqtt-packet #95)', async (t) => {
  const inputs = [...FIXTURES.map((f) => ({ name: f.name, bytes: f.bytes, frames: [f.frame] })), { name: 'whole stream', bytes: ALL_BYTES, frames: ALL_FRAMES }];
  for (const input of inputs) {
    const expected = input.frames.map(plain);
    const bad: number[] = [];
    for (let cut = 0; cut <= input.bytes.length; cut++) {
      const run = feed(splitAt(input.bytes, [cut]));
      if (run.outcome !== 'clean') bad.push(cut);
      else if (JSON.stringify(run.frames.map(plain)) !== JSON.stringify(expected)) bad.push(cut);
    }
    t.strictSame(bad, [], `${input.name}: no split point of ${input.bytes.length + 1} changes the result`);
  }
});

t.test('a BIN-Length value split across two reads is not an error', async (t) => {
  const bytes = ascii('POST /x ROTOR/1\r\nBIN-Length: 12\r\n\r\nhello world!');
  const at = bytes.indexOf('12') + 1; // between "1" and "2"
  const parser = new FrameParser();
  const first = parser.push(bytes.subarray(0, at));
  t.equal(first.error, undefined, 'half a length is "need more bytes", not an error');
  t.equal(first.frames.length, 0);
  t.equal(parser.midFrame, true);
  const second = parser.push(bytes.subarray(at));
  t.equal(second.error, undefined);
  t.equal(second.frames.length, 1);
  t.equal(second.frames[0]?.body?.toString('latin1'), 'hello world!');
});

t.test('every split into three pieces of two frames gives the same frames', async (t) => {
  const bytes = Buffer.concat([FIXTURES[5].bytes, FIXTURES[2].bytes]);
  const expected = JSON.stringify([FIXTURES[5].frame, FIXTURES[2].frame].map(plain));
  let checked = 0;
  const bad: string[] = [];
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j++) {
      const run = feed(splitAt(bytes, [i, j]));
      checked++;
      if (run.outcome !== 'clean' || JSON.stringify(run.frames.map(plain)) !== expected) bad.push(`${i},${j}`);
    }
  }
  t.equal(checked, ((bytes.length + 1) * (bytes.length + 2)) / 2, 'all pairs tried');
  t.strictSame(bad.slice(0, 10), [], 'no pair of split points changes the result');
});

t.test('5000 frames in one chunk come out complete and in order', async (t) => {
  const N = 5000;
  const parts: Buffer[] = [];
  const bodyOf = (i: number): Buffer | undefined => {
    if (i % 3 === 0) return undefined;
    const length = i % 41;
    const body = Buffer.alloc(length);
    for (let k = 0; k < length; k++) body[k] = (i * 31 + k * 7) & 0xff;
    return body;
  };
  for (let i = 0; i < N; i++) {
    const body = bodyOf(i);
    const head = i % 2 === 0 ? `POST /item/${i} ROTOR/1\r\n` : `ROTOR/1 200 OK-${i}\r\n`;
    parts.push(ascii(head + `Seq: ${i}\r\n` + (body ? `BIN-Length: ${body.length}\r\n` : '') + '\r\n'));
    if (body) parts.push(body);
  }
  const parser = new FrameParser();
  const result = parser.push(Buffer.concat(parts));
  t.equal(result.error, undefined, 'no error');
  t.equal(result.frames.length, N, 'every frame');
  const wrong: number[] = [];
  result.frames.forEach((frame: Frame, i: number) => {
    const body = bodyOf(i);
    const startOk =
      i % 2 === 0
        ? frame.kind === 'request' && frame.verb === 'POST' && frame.path === `/item/${i}`
        : frame.kind === 'response' && frame.status === 200 && frame.reason === `OK-${i}`;
    const bodyOk = body === undefined ? frame.body === undefined : frame.body !== undefined && frame.body.equals(body);
    if (!startOk || !bodyOk || getHeader(frame, 'seq') !== String(i) || frame.headers.length !== 1) wrong.push(i);
  });
  t.strictSame(wrong.slice(0, 10), [], 'each frame in its place with its own body');
  t.equal(parser.bufferedBytes, 0);
  t.equal(parser.end(), undefined);
});

t.test('non-canonical blanks around a value parse like the canonical form', async (t) => {
  const canonical = feed([ascii('GET /a ROTOR/1\r\nA: 1\r\nB: two words\r\nC: \r\n\r\n')]);
  const loose = feed([ascii('GET /a ROTOR/1\r\nA:1\r\nB: \t two words \t \r\nC:\t\r\n\r\n')]);
  t.equal(canonical.outcome, 'clean');
  t.equal(loose.outcome, 'clean');
  t.strictSame(loose.frames.map(plain), canonical.frames.map(plain));
  t.strictSame(canonical.frames[0]?.headers, [
    ['A', '1'],
    ['B', 'two words'],
    ['C', ''],
  ]);
});

t.test('header names keep their case and order; getHeader is case-insensitive', async (t) => {
  const { frames } = feed([ascii('GET / ROTOR/1\r\nzeta: 1\r\nALPHA: 2\r\nMiXeD-9: 3\r\nBin-length: 2\r\n\r\nok')]);
  t.equal(frames.length, 1);
  const frame = frames[0]!;
  t.strictSame(frame.headers, [
    ['zeta', '1'],
    ['ALPHA', '2'],
    ['MiXeD-9', '3'],
  ], 'BIN-Length in any case becomes the body');
  t.equal(frame.body?.toString(), 'ok');
  t.equal(getHeader(frame, 'Alpha'), '2');
  t.equal(getHeader(frame, 'mixed-9'), '3');
  t.equal(getHeader(frame, 'ZETA'), '1');
  t.equal(getHeader(frame, 'bin-length'), undefined, 'BIN-Length is not a header any more');
  t.equal(getHeader(frame, 'zet'), undefined, 'no prefix match');
});

t.test('midFrame, inHeaders and bufferedBytes follow the frame', async (t) => {
  const parser = new FrameParser();
  t.equal(parser.midFrame, false);
  t.equal(parser.inHeaders, false);
  parser.push(ascii('POST /x RO'));
  t.equal(parser.midFrame, true, 'a partial start line');
  t.equal(parser.inHeaders, true);
  t.equal(parser.bufferedBytes, 10);
  parser.push(ascii('TOR/1\r\nBIN-Length: 4\r\n'));
  t.equal(parser.inHeaders, true, 'still in the header block');
  t.equal(parser.bufferedBytes, 0, 'complete lines are not held');
  parser.push(ascii('\r\nab'));
  t.equal(parser.inHeaders, false, 'in the body now');
  t.equal(parser.midFrame, true);
  t.equal(parser.bufferedBytes, 2, 'two body bytes held');
  const result = parser.push(ascii('cd'));
  t.equal(result.frames.length, 1);
  t.equal(parser.midFrame, false);
  t.equal(parser.bufferedBytes, 0);
});

t.test('end() reports ROTOR_E_TRUNCATED only when a frame was cut', async (t) => {
  const whole = FIXTURES[2].bytes; // has a body
  const headerEnd = whole.indexOf('\r\n\r\n') + 4;
  for (const [name, cut] of [
    ['inside the start line', 3],
    ['after the start line', whole.indexOf('\r\n') + 2],
    ['inside a header line', whole.indexOf('\r\n') + 5],
    ['between CR and LF', whole.indexOf('\r\n') + 1],
    ['right after the header block', headerEnd],
    ['inside the body', headerEnd + 5],
    ['one byte short', whole.length - 1],
  ] as const) {
    const parser = new FrameParser();
    const result = parser.push(whole.subarray(0, cut));
    t.equal(result.error, undefined, `${name}: no error while pushing`);
    t.equal(result.frames.length, 0, `${name}: no frame`);
    t.equal(parser.end()?.code, 'ROTOR_E_TRUNCATED', `${name}: end() says truncated`);
    t.equal(parser.failed?.code, 'ROTOR_E_TRUNCATED', `${name}: and remembers it`);
    t.equal(parser.end(), undefined, `${name}: reported once`);
    t.strictSame(parser.push(FIXTURES[1].bytes), { frames: [] }, `${name}: input after that is ignored`);
  }
  const parser = new FrameParser();
  t.equal(parser.end(), undefined, 'an empty stream ends cleanly');
  const clean = new FrameParser();
  clean.push(ALL_BYTES);
  t.equal(clean.end(), undefined, 'a stream ending between frames ends cleanly');
  t.equal(clean.failed, undefined);
});

t.test('empty chunks change nothing', async (t) => {
  const chunks: Buffer[] = [];
  for (const piece of splitAt(ALL_BYTES, [0, 7, 30, 31, 100])) chunks.push(Buffer.alloc(0), piece, Buffer.alloc(0));
  const run = feed(chunks);
  t.equal(run.outcome, 'clean');
  t.strictSame(run.frames.map(plain), ALL_FRAMES.map(plain));
});

t.test('with the default limits a body may be exactly maxBodyBytes long', async (t) => {
  const body = Buffer.alloc(DEFAULTS.wire.maxBodyBytes, 0x2a);
  const bytes = Buffer.concat([ascii(`PUT /big ROTOR/1\r\nBIN-Length: ${body.length}\r\n\r\n`), body]);
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += 65536) chunks.push(bytes.subarray(at, at + 65536));
  const run = feed(chunks);
  t.equal(run.outcome, 'clean');
  t.equal(run.frames.length, 1);
  t.ok(run.frames[0]?.body?.equals(body), 'the whole body, intact');
});
