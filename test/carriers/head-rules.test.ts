/**
 * checkFrameHead (src/wire/parser.ts) holds an HTTP request's header list to the frame parser's
 * rules without writing it out: for any list it must give exactly the answer FrameParser gives
 * the same head as bytes (`VERB path ROTOR/1`, `Name: value` lines, the empty line).
 */
import t from 'tap';
import { parseOneFrame } from '../../src/wire/index.ts';
import { checkFrameHead } from '../../src/wire/parser.ts';

/** A small deterministic PRNG, so a failure is reproducible. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const viaBytes = (verb: string, path: string, list: Array<[string, string]>, limits: Parameters<typeof checkFrameHead>[3]) => {
  const text = `${verb} ${path} ROTOR/1\r\n${list.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
  const parsed = parseOneFrame(Buffer.from(text, 'latin1'), limits);
  return 'code' in parsed ? { code: parsed.code as string } : { headers: parsed.frame.headers };
};

t.test('checkFrameHead answers as the parser does, header list against bytes', async (t) => {
  const next = random(9);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
  const names = ['Token', 'token', 'X-A', 'x-a', 'X_Y', '', 'N'.repeat(65), 'Content-Type', 'BIN-Length', 'Ä'];
  const values = ['v', '', ' padded ', 'x'.repeat(40), Buffer.from('Jürgen').toString('latin1'), '\xff', 'a\tb', 'a\x01b', '12', '0'];
  const mismatches: unknown[] = [];
  const outcomes = new Set<string>();
  for (let i = 0; i < 4000; i++) {
    const limits = { maxLineBytes: 20 + Math.floor(next() * 40), maxHeaderBytes: 60 + Math.floor(next() * 200), maxHeaders: Math.floor(next() * 6), maxBodyBytes: 10 };
    const list = Array.from({ length: Math.floor(next() * 8) }, (): [string, string] => [pick(names), pick(values)]);
    const path = pick(['/x', '/' + 'p'.repeat(Math.floor(next() * 60)), '/ü', 'x']);
    const verb = pick(['GET', 'FETCH']);
    const expected = viaBytes(verb, path, list, limits);
    const got = checkFrameHead(verb, path, list, limits);
    if (JSON.stringify(got) !== JSON.stringify(expected)) mismatches.push({ verb, path, list, limits, got, expected });
    outcomes.add('code' in expected ? String(expected.code) : 'frame');
  }
  t.strictSame(mismatches.slice(0, 5), [], 'the same answer for 4000 random heads');
  t.ok(outcomes.size >= 8, `the cases reach many outcomes: ${[...outcomes].join(' ')}`);
});
