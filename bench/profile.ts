/**
 * `npx tsx bench/profile.ts [scenario] [seconds] [store] [carrier]`: profile rotor's server under load.
 * With ROTOR_PROFILE_DIST=1 the compiled server (dist/, `npm run build` first) is profiled, as
 * `rotor serve` runs it: no tsx loader in the samples. The server
 * runs in its own process with --cpu-prof (pinned apart from the load generator); the profile is
 * summed by function (self time) and by file, and the top entries are printed. The raw
 * .cpuprofile stays in bench/results/tmp/ for Chrome DevTools or speedscope.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type * as Bench from '../src/bench/index.ts';
import type * as Spawn from '../src/bench/spawn.ts';
import type { Scenario } from '../src/bench/types.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const compiled = process.env.ROTOR_PROFILE_DIST === '1';
const { formatResult, runBench } = (await import(compiled ? '../dist/bench/index.js' : '../src/bench/index.ts')) as typeof Bench;
const { hasTaskset } = (await import(compiled ? '../dist/bench/spawn.js' : '../src/bench/spawn.ts')) as typeof Spawn;

const scenario = (process.argv[2] ?? 'rotate') as Scenario;
const seconds = Number(process.argv[3] ?? 5);
const store = process.argv[4] ?? 'memory';
const carrier = process.argv[5] ?? 'tcp';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dir = `${ROOT}bench/results/tmp/prof-${Date.now()}`;
mkdirSync(dir, { recursive: true });
const pinned = hasTaskset() && availableParallelism() >= 2;

const result = await runBench({
  scenario,
  carrier,
  connections: 16,
  pipeline: 32,
  durationMs: seconds * 1000,
  warmupMs: 1000,
  progress: false,
  cpu: pinned ? 1 : undefined,
  spawn: { server: 'rotor', store, cpu: pinned ? 0 : undefined, nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200'] },
});
process.stdout.write(`${formatResult(result)}\n\n`);

const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error(`no profile written in ${dir}`);
const profile = JSON.parse(readFileSync(`${dir}/${file}`, 'utf8')) as Profile;

// Self time per node from the samples and their time deltas, over the measured window only:
// the server stops right after it, so that is the profile's last `seconds`, less a short tail
// of shutdown (start-up, module loading and the logins of the setup fall before it).
const windowEnd = profile.endTime - 300_000;
const windowStart = windowEnd - seconds * 1e6;
const selfUs = new Map<number, number>();
let at = profile.startTime;
profile.samples.forEach((id, i) => {
  at += profile.timeDeltas[i] ?? 0;
  if (at >= windowStart && at <= windowEnd) selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
const IDLE = ['(idle)', '(program)'];
const idle = profile.nodes.filter((n) => IDLE.includes(n.callFrame.functionName)).reduce((a, n) => a + (selfUs.get(n.id) ?? 0), 0);

const short = (url: string) => url.replace(/^file:\/\//, '').replace(ROOT, '').replace(/^.*node_modules\//, 'node_modules/') || '(native)';
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
for (const node of profile.nodes) {
  const us = selfUs.get(node.id) ?? 0;
  if (us === 0 || IDLE.includes(node.callFrame.functionName)) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const key = `${functionName || '(anonymous)'}  ${short(url)}${url ? `:${lineNumber + 1}` : ''}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  const f = short(url);
  byFile.set(f, (byFile.get(f) ?? 0) + us);
}

// Inclusive time of the named functions that matter for the rotate path.
const parents = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
const nodeById = new Map(profile.nodes.map((n) => [n.id, n]));
const inclusive = new Map<string, number>();
for (const [id, us] of selfUs) {
  if (IDLE.includes(nodeById.get(id)!.callFrame.functionName)) continue;
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) {
    const name = nodeById.get(at)!.callFrame.functionName;
    if (name && !seen.has(name) && !IDLE.includes(name)) {
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
}

const busy = total - idle;
const row = (name: string, us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)} %  ${name}`;
const top = (map: Map<string, number>, n: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n);
const perRequestUs = result.requests > 0 ? busy / result.requests : 0;
process.stdout.write(`server CPU profile: ${(busy / 1e6).toFixed(2)} s busy of ${(total / 1e6).toFixed(2)} s sampled; ≈ ${perRequestUs.toFixed(1)} µs of server CPU per request\n\n`);
process.stdout.write(`top functions by self time (share of busy time):\n${top(byFunction, 30).map(([k, v]) => row(k, v)).join('\n')}\n\n`);
process.stdout.write(`by file:\n${top(byFile, 15).map(([k, v]) => row(k, v)).join('\n')}\n\n`);
const watch = ['dispatch', 'exchange', 'exchangeLocked', 'perform', 'mintToken', 'verifyToken', 'hashToken', 'mac', 'serializeFrame', 'push', 'onData', 'flush', 'runHandler', 'produce', 'commitSession', 'loadSession', 'admit', 'rotate', 'run', 'getHeader', 'writeGeneric', 'writev'];
process.stdout.write(`inclusive time of selected functions:\n${watch.filter((n) => inclusive.has(n)).map((n) => row(n, inclusive.get(n)!)).join('\n')}\n`);
process.stdout.write(`\nprofile: ${dir}/${file}\n`);
