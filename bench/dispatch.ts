/**
 * `npx tsx bench/dispatch.ts [sessions] [rounds] [metered|sealed]`: the dispatcher alone, no carrier — CPU µs per
 * rotating exchange (GET /hello of the example app on the memory store, with the metrics store
 * wrapper as `rotor serve` has it), `sessions` clients each sending its next token in turn,
 * all sessions' frames of one round in flight at once. Process CPU time, best of five. With
 * `metered`, the sessions are opened with access codes (spec §10): every exchange is metered. With
 * `sealed`, they are sealed application sessions (spec §12): every request carries a Seal-Proof,
 * whose making (the client's work) is timed apart and taken off.
 */
import { exampleApp } from '../src/app/example.ts';
import { resolveConfig } from '../src/config/defaults.ts';
import { silentLogger } from '../src/log/index.ts';
import { Metrics, timedStore } from '../src/metrics/index.ts';
import { hashPassword } from '../src/server/auth.ts';
import { Rotor } from '../src/server/rotor.ts';
import { pooledRandom } from '../src/session/random.ts';
import { KeyRing, mac } from '../src/session/token.ts';
import { MemoryStore } from '../src/store/memory.ts';
import { getHeader, type RequestFrame } from '../src/wire/index.ts';
import { issueLot, templateRecord } from '../src/quotas/templates.ts';
import { addApp } from '../src/seal/apps.ts';
import { startOpen } from '../src/seal/instance.ts';
import { sealProof } from '../src/seal/proof.ts';

const sessions = Number(process.argv[2] ?? 512);
const rounds = Number(process.argv[3] ?? 200);
const metered = process.argv[4] === 'metered';
const sealed = process.argv[4] === 'sealed';
const config = resolveConfig({ logLevel: 'error', auth: { scryptN: 1024 } });
const random = pooledRandom();
const metrics = new Metrics();
const store = timedStore(new MemoryStore(), metrics);
await store.putUser({ name: 'bench', passwordHash: await hashPassword('pw', config.auth, random), totpSecret: undefined, lastTotpStep: undefined } as never);
const rotor = new Rotor({ config, store, app: exampleApp(), keys: KeyRing.generate(random), log: silentLogger(), metrics, random });

const request = (path: string, headers: Array<[string, string]>): RequestFrame => ({ kind: 'request', verb: path === '/rotor/login' ? 'POST' : 'GET', path, headers, body: undefined });
const tokens: string[] = [];
const template = templateRecord('bench-pass', { maxBytesTotal: 1e15, usageMs: 365 * 86_400_000 }, Date.now());
await store.commitRecord('template', template.name, template, 0);
const { codes } = await issueLot(store, random, { id: 'bench', template, count: sessions, comment: '', issuer: 'bench', owner: '', now: Date.now() });
const seals: Array<{ key: Buffer; nonce: string }> = [];
const app = sealed ? await addApp(store, 'bench', 'open', Date.now(), random) : undefined;
for (let i = 0; sealed && i < sessions; i++) {
  const nonce = getHeader((await rotor.dispatch({ kind: 'request', verb: 'GET', path: '/rotor/seal', headers: [], body: undefined })).frame, 'Seal-Nonce')!;
  const pending = startOpen({ app: app!.id, instance: `bench-${i}`, key: app!.key }, nonce);
  const opened = (await rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/seal', headers: pending.headers, body: undefined })).frame;
  tokens.push(getHeader(opened, 'Token')!);
  seals.push({ key: pending.sessionKey(getHeader(opened, 'Seal-Key')!)!, nonce: getHeader(opened, 'Seal-Nonce')! });
}
for (let i = 0; !sealed && i < sessions; i++) {
  const login = metered ? [['Code', codes[i]] as [string, string]] : [['User', 'bench'], ['Password', 'pw']] as Array<[string, string]>;
  tokens.push(getHeader((await rotor.dispatch(request('/rotor/login', login))).frame, 'Token')!);
}

/** Wall time spent making proofs (the client's work, taken off the sealed figure). */
let provingMs = 0;
const headersOf = (token: string, i: number): Array<[string, string]> => {
  if (!sealed) return [['Token', token]];
  const start = performance.now();
  const proof = sealProof(seals[i].key, seals[i].nonce, 'GET', '/hello', undefined, mac);
  provingMs += performance.now() - start;
  return [['Token', token], ['Seal-Proof', proof]];
};

async function round(): Promise<void> {
  const replies = await Promise.all(tokens.map((token, i) => rotor.dispatch(request('/hello', headersOf(token, i)))));
  replies.forEach((reply, i) => {
    const next = getHeader(reply.frame, 'Token');
    if (reply.status !== 200 || !next) throw new Error(`exchange failed: ${reply.status} ${reply.error}`);
    tokens[i] = next;
    if (sealed) seals[i].nonce = getHeader(reply.frame, 'Seal-Nonce')!;
  });
}

const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
for (let i = 0; i < rounds / 4; i++) await round();
let best = Infinity;
for (let r = 0; r < 5; r++) {
  const start = cpu();
  provingMs = 0;
  for (let i = 0; i < rounds; i++) await round();
  best = Math.min(best, (cpu() - start - provingMs * 1000) / (rounds * sessions));
}
process.stdout.write(`dispatcher alone${metered ? ', metered' : sealed ? ', sealed' : ''}: ${best.toFixed(2)} µs CPU per rotating exchange (${sessions} sessions × ${rounds} rounds, best of 5)\n`);
