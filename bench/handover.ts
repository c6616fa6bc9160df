/**
 * `npx tsx bench/handover.ts [logins] [rounds]`: what a hand-over costs the peer (spec §11), in
 * process, no carrier — CPU µs per hand-over token verified (HandOver.admit: parse, Ed25519,
 * audience, expiry, the pulled list), per hand-over login (`POST /rotor/login` + `Hand-over`
 * through the dispatcher: verify, spend the token in the store, open the session, link it to its
 * parent) and, as the yardstick, per plain password-free login (`POST /rotor/token`: a session
 * opened with no password to hash). Memory store behind the metrics wrapper, as `rotor serve`
 * has it; each round's frames all in flight at once. Process CPU time, best of five.
 */
import { randomBytes } from 'node:crypto';
import { exampleApp } from '../src/app/example.ts';
import { resolveConfig } from '../src/config/defaults.ts';
import { HandOver, HandOverKeys, mintHandOver, newHandOverKey, parsePeers, spkiBase64 } from '../src/handover/index.ts';
import { silentLogger } from '../src/log/index.ts';
import { Metrics, timedStore } from '../src/metrics/index.ts';
import { Rotor } from '../src/server/rotor.ts';
import { pooledRandom } from '../src/session/random.ts';
import { KeyRing } from '../src/session/token.ts';
import { MemoryStore } from '../src/store/memory.ts';
import type { RequestFrame } from '../src/wire/index.ts';

const logins = Number(process.argv[2] ?? 1000);
const rounds = Number(process.argv[3] ?? 5);
const config = resolveConfig({ logLevel: 'error', session: { openTokenCreate: true } });
const random = pooledRandom();
const issuerKey = newHandOverKey(Date.now(), 'ha1');
const handOver = new HandOver({
  peers: parsePeers({ self: 'b', peers: [{ name: 'a', address: 'tcp://127.0.0.1:1', publicKeys: { ha1: spkiBase64(issuerKey.publicKey) }, revocations: 'http://127.0.0.1:1/rotor/revocations' }] }),
  keys: new HandOverKeys([newHandOverKey()]),
});
const metrics = new Metrics();
const rotor = new Rotor({ config, store: timedStore(new MemoryStore(), metrics), app: exampleApp(), keys: KeyRing.generate(random), log: silentLogger(), metrics, random, handOver });

const tokens = (n: number): string[] => {
  const issued = Math.floor(Date.now() / 1000);
  return Array.from({ length: n }, () =>
    mintHandOver('ha1', issuerKey.privateKey, { issuer: 'a', audience: 'b', parent: randomBytes(16).toString('base64url'), user: 'alice', issued, expires: issued + 900, nonce: randomBytes(16).toString('base64url') }),
  );
};
const frame = (headers: Array<[string, string]>, path = '/rotor/login', body?: Buffer): RequestFrame => ({ kind: 'request', verb: 'POST', path, headers, body });
const cpu = (): number => {
  const used = process.cpuUsage();
  return used.user + used.system;
};

/** Best of `rounds`: CPU µs per item of `work` over `n` fresh items from `make`. */
async function best<T>(make: (n: number) => T[], work: (items: T[]) => Promise<void> | void): Promise<number> {
  await work(make(Math.min(200, logins)));
  let fastest = Infinity;
  for (let r = 0; r < rounds; r++) {
    const items = make(logins);
    const start = cpu();
    await work(items);
    fastest = Math.min(fastest, (cpu() - start) / logins);
  }
  return fastest;
}

const expectOk = (status: number, what: string) => {
  if (status !== 200) throw new Error(`${what} failed: ${status}`);
};
const verify = await best(tokens, (all) => {
  const now = Date.now();
  for (const token of all) handOver.admit(token, 'a', now);
});
const handOverLogin = await best(tokens, async (all) => {
  const replies = await Promise.all(all.map((token) => rotor.dispatch(frame([['Hand-over', token], ['Home', 'a']]))));
  for (const reply of replies) expectOk(reply.status, 'hand-over login');
});
const body = Buffer.from('{"user":"alice"}');
const plain = await best(
  (n) => Array.from({ length: n }, () => body),
  async (all) => {
    const replies = await Promise.all(all.map((json) => rotor.dispatch(frame([['Content-Type', 'application/json']], '/rotor/token', json))));
    for (const reply of replies) expectOk(reply.status, 'token create');
  },
);
process.stdout.write(
  `hand-over token verified: ${verify.toFixed(1)} µs CPU\n` +
    `hand-over login (dispatcher): ${handOverLogin.toFixed(1)} µs CPU\n` +
    `password-free login (POST /rotor/token): ${plain.toFixed(1)} µs CPU\n` +
    `(${logins} each × ${rounds} rounds, best of ${rounds})\n`,
);
