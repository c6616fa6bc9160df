/**
 * `npx tsx bench/micro.ts`: the per-request costs of the token path, in CPU microseconds per
 * call (process CPU time, not wall time, so other work on the machine disturbs it less).
 */
import { KeyRing, hashToken, mintToken, verifyToken } from '../src/session/token.ts';
import { pooledRandom } from '../src/session/random.ts';
import { FrameParser, serializeFrame, type ResponseFrame } from '../src/wire/index.ts';

const random = pooledRandom();
const keys = KeyRing.generate(random);
const claims = { session: random(16).toString('base64url'), generation: 5000, issued: Math.floor(Date.now() / 1000), ttlMinutes: 120, user: 'bench' };
const token = mintToken(keys, claims, random);
const reply: ResponseFrame = { kind: 'response', status: 200, reason: 'OK', headers: [['Token', token], ['Content-Type', 'text/plain; charset=utf-8']], body: Buffer.from('hello, bench') };
const request = Buffer.from(`GET /hello ROTOR/1\r\nToken: ${token}\r\n\r\n`.repeat(32));

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Best of five rounds of `n` calls: CPU µs per call. */
function measure(n: number, work: () => unknown): number {
  for (let i = 0; i < n; i++) work();
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const start = cpuMicros();
    for (let i = 0; i < n; i++) work();
    best = Math.min(best, (cpuMicros() - start) / n);
  }
  return best;
}

const cases: Array<[string, number, () => unknown]> = [
  ['mintToken', 50_000, () => mintToken(keys, claims, random)],
  ['verifyToken', 50_000, () => verifyToken(keys, token)],
  ['hashToken', 100_000, () => hashToken(token)],
  ['serializeFrame (a /hello reply)', 100_000, () => serializeFrame(reply)],
  ['FrameParser.push (per frame, 32 per chunk)', 5_000, () => new FrameParser().push(request)],
];
let tokenPath = 0;
for (const [name, n, work] of cases) {
  let us = measure(n, work);
  if (name.startsWith('FrameParser')) us /= 32;
  if (['mintToken', 'verifyToken', 'hashToken'].includes(name)) tokenPath += name === 'hashToken' ? 2 * us : us;
  process.stdout.write(`${name.padEnd(44)} ${us.toFixed(2).padStart(7)} µs\n`);
}
process.stdout.write(`${'token work per rotation (mint + verify + 2 hash)'.padEnd(44)} ${tokenPath.toFixed(2).padStart(7)} µs\n`);
