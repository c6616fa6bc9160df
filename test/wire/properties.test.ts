import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameLimitError, FrameParser, serializeFrame } from '../../src/wire/index.ts';
import { ERRORS, RotorError } from '../../src/errors.ts';
import { applyCuts, cuts, frame, hostileBytes, nearLimitBytes, nearLimitFrame, nearLimitStream, wildFrame } from './fixtures/arbitraries.ts';
import { NO_LIMITS, SMALL_LIMITS, bytewise, errorOf, fcReplay, feed, plain } from './fixtures/helpers.ts';

/**
 * Fixed run counts keep this file well under 20 s. On failure fast-check throws with the seed
 * and path in the message; replay with FC_SEED=<seed> FC_PATH=<path> npx tap test/wire/properties.test.ts
 */
const RUNS = { roundTrip: 3000, canonical: 2000, hostile: 12000, invariance: 6000, wild: 6000, codes: 6000, boundary: 4000 };
const ERROR_CODES = new Set(Object.keys(ERRORS));
/** pending line (≤ maxLineBytes + 1) or body (≤ maxBodyBytes); the constant allows for CR/LF slack. */
const BUFFER_BOUND = SMALL_LIMITS.maxHeaderBytes + SMALL_LIMITS.maxBodyBytes + 8;

function check<T>(arb: fc.Arbitrary<T>, runs: number, predicate: (value: T) => void): number {
  let executed = 0;
  fc.assert(
    fc.property(arb, (value) => {
      executed++;
      predicate(value);
    }),
    { numRuns: runs, ...fcReplay() },
  );
  return executed;
}

t.test('(1) any list of valid frames, cut into chunks anyhow, parses back to exactly those frames', async (t) => {
  const executed = check(fc.tuple(fc.array(frame(), { maxLength: 6 }), cuts), RUNS.roundTrip, ([frames, rawCuts]) => {
    const bytes = Buffer.concat(frames.map((f) => serializeFrame(f)));
    const run = feed(applyCuts(bytes, rawCuts));
    assert.deepEqual(run.pushErrors, []);
    assert.equal(run.endError, undefined);
    assert.deepStrictEqual(run.frames.map(plain), frames.map(plain));
    // plain() keeps body undefined and empty apart; check the raw values too.
    run.frames.forEach((parsed, i) => {
      const sent = frames[i]!.body;
      if (sent === undefined) assert.equal(parsed.body, undefined);
      else assert.ok(Buffer.isBuffer(parsed.body) && parsed.body.equals(sent));
    });
    assert.ok(run.maxBuffered <= 8192 + 1 + 200, `held ${run.maxBuffered} bytes`);
  });
  t.equal(executed, RUNS.roundTrip, 'every run checked');
});

t.test('(2) hostile bytes in random chunks: no throw, frames and at most one known error, bounded memory', async (t) => {
  let sawError = 0;
  let sawFrames = 0;
  const executed = check(fc.tuple(hostileBytes, cuts), RUNS.hostile, ([bytes, rawCuts]) => {
    const run = feed(applyCuts(bytes, rawCuts), SMALL_LIMITS); // feed() lets any exception escape
    const errors = [...run.pushErrors, ...(run.endError ? [run.endError] : [])];
    assert.ok(errors.length <= 1, `errors: ${errors.map((e) => e.code).join(', ')}`);
    for (const error of errors) {
      assert.ok(error instanceof RotorError);
      assert.ok(ERROR_CODES.has(error.code), `unknown code ${error.code}`);
      assert.equal(error.fatal, true, `${error.code} from the codec is a protocol error`);
    }
    if (run.endError) assert.equal(run.endError.code, 'ROTOR_E_TRUNCATED');
    assert.equal(run.framesAfterError, 0);
    assert.ok(run.maxBuffered <= BUFFER_BOUND, `bufferedBytes reached ${run.maxBuffered}`);
    // Whatever the parser accepts, the serializer can write back, and it parses to the same frame.
    for (const parsed of run.frames) {
      const again = new FrameParser(SMALL_LIMITS).push(serializeFrame(parsed, SMALL_LIMITS));
      assert.equal(again.error, undefined);
      assert.deepStrictEqual(again.frames.map(plain), [plain(parsed)]);
    }
    if (errors.length > 0) sawError++;
    if (run.frames.length > 0) sawFrames++;
  });
  t.equal(executed, RUNS.hostile, 'every run checked');
  // The generators must exercise both paths, or the property says little.
  t.ok(sawError > RUNS.hostile / 4, `${sawError} runs ended in an error`);
  t.ok(sawFrames > RUNS.hostile / 20, `${sawFrames} runs yielded frames`);
});

t.test('(2b) how hostile bytes are chunked changes neither the frames nor whether it fails', async (t) => {
  const executed = check(fc.tuple(hostileBytes, cuts), RUNS.invariance, ([bytes, rawCuts]) => {
    const whole = feed([bytes], SMALL_LIMITS);
    const chunked = feed(applyCuts(bytes, rawCuts), SMALL_LIMITS);
    assert.deepStrictEqual(chunked.frames.map(plain), whole.frames.map(plain));
    assert.equal(chunked.outcome, whole.outcome);
  });
  t.equal(executed, RUNS.invariance, 'every run checked');
});

t.test('(2c) the error, if any, is the same for any chunking as in one chunk and one byte at a time', async (t) => {
  const seen = new Map<string, number>();
  const executed = check(fc.tuple(fc.oneof(hostileBytes, nearLimitBytes, nearLimitStream), cuts), RUNS.codes, ([bytes, rawCuts]) => {
    const whole = errorOf(feed([bytes], SMALL_LIMITS));
    const byteByByte = errorOf(feed(bytewise(bytes), SMALL_LIMITS));
    const chunked = errorOf(feed(applyCuts(bytes, rawCuts), SMALL_LIMITS));
    assert.equal(whole, byteByByte, 'one chunk and one byte at a time');
    assert.equal(chunked, byteByByte, 'these chunks and one byte at a time');
    seen.set(String(whole), (seen.get(String(whole)) ?? 0) + 1);
  });
  t.equal(executed, RUNS.codes, 'every run checked');
  // The inputs must reach every rule that can clash with another, or agreeing says little.
  for (const code of ['null', 'ROTOR_E_BAD_LINE_ENDING', 'ROTOR_E_LINE_TOO_LONG', 'ROTOR_E_HEADERS_TOO_LARGE', 'ROTOR_E_TOO_MANY_HEADERS', 'ROTOR_E_BAD_HEADER', 'ROTOR_E_DUPLICATE_HEADER', 'ROTOR_E_BAD_LENGTH', 'ROTOR_E_BODY_TOO_LARGE']) {
    t.ok((seen.get(code) ?? 0) > RUNS.codes / 300, `${code}: ${seen.get(code) ?? 0} runs`);
  }
});

t.test('(2d) near the limits, whatever the parser accepts the serializer writes back under the same limits, unchanged', async (t) => {
  let accepted = 0;
  const executed = check(nearLimitBytes, RUNS.boundary, (bytes) => {
    const run = feed([bytes], SMALL_LIMITS);
    for (const parsed of run.frames) {
      accepted++;
      const again = new FrameParser(SMALL_LIMITS).push(serializeFrame(parsed, SMALL_LIMITS));
      assert.equal(again.error, undefined, `re-serialized frame refused: ${again.error?.code}`);
      assert.deepStrictEqual(again.frames.map(plain), [plain(parsed)]);
    }
  });
  t.equal(executed, RUNS.boundary, 'every run checked');
  t.ok(accepted > RUNS.boundary / 10, `${accepted} frames accepted`);
});

t.test('(2e) serializeFrame(f, limits) refuses exactly the frames whose bytes FrameParser(limits) refuses, with its code', async (t) => {
  const outcomes = new Map<string, number>();
  const executed = check(nearLimitFrame, RUNS.boundary, (input) => {
    const parsed = feed([serializeFrame(input, NO_LIMITS)], SMALL_LIMITS);
    let refusal: string | null = null;
    let bytes: Buffer | undefined;
    try {
      bytes = serializeFrame(input, SMALL_LIMITS);
    } catch (err) {
      assert.ok(err instanceof FrameLimitError, `threw ${String(err)}`);
      refusal = err.code;
    }
    assert.equal(refusal, errorOf(parsed), 'the serializer refuses with the code the parser gives');
    if (bytes !== undefined) assert.deepStrictEqual(feed([bytes], SMALL_LIMITS).frames.map(plain), [plain(input)]);
    outcomes.set(String(refusal), (outcomes.get(String(refusal)) ?? 0) + 1);
  });
  t.equal(executed, RUNS.boundary, 'every run checked');
  for (const code of ['null', 'ROTOR_E_LINE_TOO_LONG', 'ROTOR_E_HEADERS_TOO_LARGE', 'ROTOR_E_TOO_MANY_HEADERS', 'ROTOR_E_BODY_TOO_LARGE']) {
    t.ok((outcomes.get(code) ?? 0) > RUNS.boundary / 100, `${code}: ${outcomes.get(code) ?? 0} frames`);
  }
});

t.test('(3) serialize(parse(x)) == x for canonical frames', async (t) => {
  const executed = check(fc.array(frame(), { minLength: 1, maxLength: 5 }), RUNS.canonical, (frames) => {
    const x = Buffer.concat(frames.map((f) => serializeFrame(f)));
    const parser = new FrameParser();
    const result = parser.push(x);
    assert.equal(result.error, undefined);
    assert.equal(result.frames.length, frames.length);
    const y = Buffer.concat(result.frames.map((f) => serializeFrame(f)));
    assert.equal(y.toString('hex'), x.toString('hex'));
    assert.equal(parser.end(), undefined);
  });
  t.equal(executed, RUNS.canonical, 'every run checked');
});

t.test('(4) the serializer either refuses a frame (TypeError) or writes one that parses back unchanged', async (t) => {
  let refused = 0;
  let written = 0;
  const executed = check(wildFrame, RUNS.wild, (input) => {
    let bytes: Buffer;
    try {
      bytes = serializeFrame(input);
    } catch (err) {
      assert.ok(err instanceof TypeError, `threw ${String(err)}`);
      refused++;
      return;
    }
    written++;
    const parser = new FrameParser();
    const result = parser.push(bytes);
    assert.equal(result.error, undefined, `serialized bytes were refused: ${result.error?.code}`);
    assert.deepStrictEqual(result.frames.map(plain), [plain(input)]);
    assert.equal(parser.midFrame, false);
  });
  t.equal(executed, RUNS.wild, 'every run checked');
  t.ok(refused > RUNS.wild / 10, `${refused} frames refused`);
  t.ok(written > RUNS.wild / 10, `${written} frames written`);
});
