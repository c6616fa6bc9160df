/**
 * `npm run bench`: one run, on this machine, of rotor next to its baselines — the figures, their
 * ratios, the targets (reported, never asserted) — written to bench/results/<date>.md with a
 * chart (<date>.svg) and printed.
 *
 * Every measurement is its own processes: the server pinned to one core, the load generator
 * to the other (taskset), a fresh pair per run. The machine is noisy (its speed drifts over
 * minutes, and other work may share it), so each baseline runs right before what is compared
 * with it, each pair ROUNDS times alternating (the 1×1 latency pair once more), and the best round of
 * each counts.
 *
 * Environment: BENCH_SECONDS (measured, default 5), BENCH_WARMUP (default 1), BENCH_ROUNDS
 * (default 2), BENCH_SESSIONS (sessions preloaded for the durable comparison, default 1000000),
 * BENCH_ONLY (comma-separated row ids to run, e.g. "1,2,9").
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CarrierUnavailable } from '../src/bench/carriers.ts';
import { formatMicros } from '../src/bench/index.ts';
import type { MemoryProbeResult } from '../src/bench/memory.ts';
import { startRedis, type RedisServer } from '../src/bench/redis.ts';
import { hasTaskset, startChild } from '../src/bench/spawn.ts';
import type { BenchOptions, BenchResult, LatencySummary } from '../src/bench/types.ts';
import { renderChart } from './chart.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1_000_000);
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : undefined;
const PINNED = hasTaskset() && availableParallelism() >= 2;
const SERVER_CPU = PINNED ? 0 : undefined;
const LOAD_CPU = PINNED ? 1 : undefined;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const has = (path: string) => existsSync(`${ROOT}${path}`);

/** One measured figure of the results table. */
interface Row {
  id: string;
  what: string;
  /** The figure, formatted; or "not available: reason". */
  figure: string;
  baseline: string;
  ratio: number | undefined;
  target: string;
  /** For PASS/MISS: true when the ratio meets the target. */
  meets?: (ratio: number) => boolean;
  note?: string;
}

/** One load run, for the details table and the chart. */
interface Run {
  label: string;
  result: BenchResult | undefined;
  skipped?: string;
}

const rows: Row[] = [];
const runs: Run[] = [];
const started = Date.now();
const load0 = loadavg();

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function unavailable(id: string, what: string, target: string, reason: string): void {
  log(`  #${id} ${what}: not available: ${reason}`);
  rows.push({ id, what, figure: `not available: ${reason}`, baseline: '', ratio: undefined, target });
}

const wanted = (id: string) => !ONLY || ONLY.has(id);

/** One load run in a pinned child, driving a server it spawns pinned to the other core. */
async function load(label: string, options: BenchOptions): Promise<BenchResult> {
  const full: BenchOptions = {
    warmupMs: WARMUP * 1000,
    durationMs: SECONDS * 1000,
    progress: false,
    ...options,
    spawn: options.spawn ? { cpu: SERVER_CPU, ...options.spawn } : undefined,
  };
  const child = await startChild<Record<string, never>>('load', full, { cpu: LOAD_CPU });
  try {
    const { result } = await child.wait<{ result: BenchResult }>('result');
    const errors = Object.entries(result.errors).map(([k, v]) => `${k} ${v}`).join(', ');
    log(
      `  ${label}: ${result.throughput.toLocaleString('en-US')} ok/s, p50 ${formatMicros(result.latencyUs.p50)}, p99 ${formatMicros(result.latencyUs.p99)}` +
        `, cpu load ${pct(result.cpu.load)} server ${result.cpu.server === null ? '?' : pct(result.cpu.server)}${errors ? `, errors: ${errors}` : ''}`,
    );
    runs.push({ label, result });
    return result;
  } finally {
    await child.stop();
  }
}

/** Baseline and subject alternately, ROUNDS times; the best of each (noise only ever slows). */
async function pair(
  labels: [string, string],
  options: [BenchOptions, BenchOptions],
  best: (r: BenchResult) => number,
  higherIsBetter: boolean,
  rounds = ROUNDS,
): Promise<[BenchResult, BenchResult]> {
  const results: [BenchResult[], BenchResult[]] = [[], []];
  for (let round = 0; round < rounds; round++) {
    for (const side of [0, 1] as const) results[side].push(await load(`${labels[side]} (round ${round + 1})`, options[side]));
  }
  const pick = (list: BenchResult[]) => list.reduce((a, b) => ((higherIsBetter ? best(b) > best(a) : best(b) < best(a)) ? b : a));
  return [pick(results[0]), pick(results[1])];
}

function pct(x: number): string {
  return `${Math.round(x * 100)} %`;
}
function perSec(x: number): string {
  return `${x.toLocaleString('en-US')} /s`;
}
function describe(r: BenchResult): string {
  return `${perSec(r.throughput)}, p99 ${formatMicros(r.latencyUs.p99)}`;
}
const throughputOf = (r: BenchResult) => r.throughput;
const p50Of = (r: BenchResult) => r.latencyUs.p50;

async function guarded(id: string, what: string, target: string, work: () => Promise<void>): Promise<void> {
  if (!wanted(id)) return;
  log(`#${id} ${what}`);
  try {
    await work();
  } catch (err) {
    const message = err instanceof CarrierUnavailable || /not built|not available|unknown store/i.test((err as Error).message) ? (err as Error).message : `failed: ${(err as Error).message}`;
    unavailable(id, what, target, message.split('\n')[0]);
  }
}

// ---- the measurements ------------------------------------------------------------------------------

const C = 16;
const P = 32;
const big = { connections: C, pipeline: P };

await guarded('1-2', `TCP rotate, memory store, vs the echo ceiling (${C}×${P})`, '≥ 40 %', async () => {
  const [echo, memory] = await pair(
    ['echo ceiling', 'rotor memory'],
    [
      { ...big, scenario: 'rotate', spawn: { server: 'echo' } },
      { ...big, scenario: 'rotate', spawn: { server: 'rotor', store: 'memory' } },
    ],
    throughputOf,
    true,
  );
  rows.push({ id: '1', what: `echo ceiling: bare listenStream + pre-built replies, ${C}×${P}`, figure: describe(echo), baseline: '', ratio: undefined, target: '' });
  rows.push({
    id: '2',
    what: `rotor rotate (GET /hello), memory store, ${C}×${P}`,
    figure: describe(memory),
    baseline: perSec(echo.throughput),
    ratio: memory.throughput / echo.throughput,
    target: '≥ 40 %',
    meets: (r) => r >= 0.4,
  });
});

await guarded('2q', `TCP rotate on sessions of access codes (every exchange metered, spec §10) vs plain sessions, memory store (${C}×${P})`, '≥ 90 %', async () => {
  const [plain, metered] = await pair(
    ['rotor rotate', 'rotor rotate metered'],
    [
      { ...big, scenario: 'rotate', spawn: { server: 'rotor', store: 'memory' } },
      { ...big, scenario: 'quota', spawn: { server: 'rotor', store: 'memory' } },
    ],
    throughputOf,
    true,
  );
  rows.push({
    id: '2q',
    what: `rotor rotate with a template attached (sessions of access codes), memory store, ${C}×${P}`,
    figure: describe(metered),
    baseline: `plain ${perSec(plain.throughput)}`,
    ratio: metered.throughput / plain.throughput,
    target: '≥ 90 %',
    meets: (r) => r >= 0.9,
  });
});

await guarded('2s', `TCP rotate on sealed application sessions (every request proven, spec §12) vs plain sessions, memory store (${C}×${P})`, '≥ 70 %', async () => {
  const [plain, sealed] = await pair(
    ['rotor rotate', 'rotor rotate sealed'],
    [
      { ...big, scenario: 'rotate', spawn: { server: 'rotor', store: 'memory' } },
      { ...big, scenario: 'sealed', spawn: { server: 'rotor', store: 'memory' } },
    ],
    throughputOf,
    true,
  );
  rows.push({
    id: '2s',
    what: `sealed rotate: GET /hello with a Seal-Proof on sealed application sessions, memory store, ${C}×${P}`,
    figure: describe(sealed),
    baseline: `plain ${perSec(plain.throughput)}`,
    ratio: sealed.throughput / plain.throughput,
    target: '≥ 70 %',
    meets: (r) => r >= 0.7,
  });
});

await guarded('3', `durable default store (lmdb), ${SESSIONS.toLocaleString('en-US')} live sessions, vs memory store with as many`, '≥ 50 %', async () => {
  if (!has('src/store/index.ts')) throw new Error('src/store/index.ts not built yet');
  const [memory, durable] = await pair(
    [`rotor memory, ${SESSIONS} sessions`, `rotor lmdb, ${SESSIONS} sessions`],
    [
      { ...big, scenario: 'rotate', spawn: { server: 'rotor', store: 'memory', preload: SESSIONS } },
      { ...big, scenario: 'rotate', spawn: { server: 'rotor', store: 'lmdb', preload: SESSIONS } },
    ],
    throughputOf,
    true,
  );
  rows.push({
    id: '3',
    what: `rotor rotate, lmdb store, ${SESSIONS.toLocaleString('en-US')} sessions loaded, ${C}×${P}`,
    figure: describe(durable),
    baseline: perSec(memory.throughput),
    ratio: durable.throughput / memory.throughput,
    target: '≥ 50 %',
    meets: (r) => r >= 0.5,
    note: 'baseline: memory store with the same sessions loaded',
  });
});

let redis: RedisServer | undefined;
let bareRedis: { ok: number; durationMs: number; latency: LatencySummary; loadCpu: number; errors: Record<string, number> } | undefined;
await guarded('5', `Redis alone: Lua rotate by EVALSHA via ioredis (${C}×${P})`, '', async () => {
  // redis-server shares the load generator's core, in rows 4 and 5 alike: rotor keeps its core to
  // itself (on the server core, rotor and Redis starved each other and rotor idled at ~78 %).
  redis = await startRedis('redis-server', { cpu: LOAD_CPU });
  const child = await startChild<Record<string, never>>(
    'redis-rotate',
    { port: redis.port, connections: C, pipeline: P, warmupMs: WARMUP * 1000, durationMs: SECONDS * 1000 },
    { cpu: LOAD_CPU },
  );
  try {
    bareRedis = (await child.wait<{ result: NonNullable<typeof bareRedis> }>('result')).result;
  } finally {
    await child.stop();
  }
  const throughput = Math.round(bareRedis.ok / (bareRedis.durationMs / 1000));
  log(`  redis EVALSHA: ${throughput.toLocaleString('en-US')} /s, p99 ${formatMicros(bareRedis.latency.p99)}`);
  runs.push({
    label: 'redis EVALSHA alone',
    result: {
      format: 'rotor-bench/1',
      scenario: 'rotate',
      carrier: 'redis',
      target: { host: '127.0.0.1', port: redis.port, spawned: null },
      ...big,
      warmupMs: WARMUP * 1000,
      durationMs: bareRedis.durationMs,
      requests: bareRedis.ok,
      ok: bareRedis.ok,
      throughput,
      responseRate: throughput,
      latencyUs: bareRedis.latency,
      errors: bareRedis.errors,
      extra: {},
      cpu: { load: Math.round(bareRedis.loadCpu * 100) / 100, server: null },
      setupMs: 0,
    },
  });
  rows.push({ id: '5', what: `Redis alone: Lua rotate by EVALSHA, ioredis, ${C}×${P} (redis-server on the load generator's core)`, figure: `${perSec(throughput)}, p99 ${formatMicros(bareRedis.latency.p99)}`, baseline: '', ratio: undefined, target: '' });
});

await guarded('4', `rotor on Redis vs Redis alone (${C}×${P})`, '≥ 80 %', async () => {
  if (!redis || !bareRedis) throw new Error('not available: no Redis baseline (row 5)');
  const result = await load('rotor redis', { ...big, scenario: 'rotate', spawn: { server: 'rotor', store: redis.url } });
  const bare = Math.round(bareRedis.ok / (bareRedis.durationMs / 1000));
  rows.push({
    id: '4',
    what: `rotor rotate, Redis store, ${C}×${P}`,
    figure: describe(result),
    baseline: perSec(bare),
    ratio: result.throughput / bare,
    target: '≥ 80 %',
    meets: (r) => r >= 0.8,
    note: "redis-server on the load generator's core",
  });
});
await redis?.close();

await guarded('6', `HTTP fallback vs a bare node:http server answering the same bytes (${C}×${P} pipelined)`, '≥ 80 %', async () => {
  const [bare, rotor] = await pair(
    ['bare node:http', 'rotor http'],
    [
      { ...big, carrier: 'http', scenario: 'rotate', spawn: { server: 'http-echo' } },
      { ...big, carrier: 'http', scenario: 'rotate', spawn: { server: 'rotor', store: 'memory' } },
    ],
    throughputOf,
    true,
  );
  rows.push({ id: '6a', what: `bare node:http answering rotor's HTTP bytes, ${C}×${P} pipelined`, figure: describe(bare), baseline: '', ratio: undefined, target: '' });
  rows.push({
    id: '6',
    what: `rotor rotate over HTTP/1.1, memory store, ${C}×${P} pipelined`,
    figure: describe(rotor),
    baseline: perSec(bare.throughput),
    ratio: rotor.throughput / bare.throughput,
    target: '≥ 80 %',
    meets: (r) => r >= 0.8,
  });
});

await guarded('7', `WebSocket vs TCP, the same rotor (memory store, ${C}×${P})`, '≥ 70 %', async () => {
  const [tcp, ws] = await pair(
    ['rotor tcp (http listener on)', 'rotor ws'],
    [
      { ...big, carrier: 'tcp', scenario: 'rotate', spawn: { server: 'rotor', store: 'memory', http: true } },
      { ...big, carrier: 'ws', scenario: 'rotate', spawn: { server: 'rotor', store: 'memory', http: true } },
    ],
    throughputOf,
    true,
  );
  rows.push({
    id: '7',
    what: `rotor rotate over WebSocket, memory store, ${C}×${P}`,
    figure: describe(ws),
    baseline: `TCP ${perSec(tcp.throughput)}`,
    ratio: ws.throughput / tcp.throughput,
    target: '≥ 70 %',
    meets: (r) => r >= 0.7,
  });
});

for (const count of [100_000, 1_000_000]) {
  await guarded('8', `RSS per idle session, memory store, ${count.toLocaleString('en-US')} sessions`, count === 1_000_000 ? '≤ 200 B' : '', async () => {
    for (const variant of ['login', 'rotated'] as const) {
      const child = await startChild<Record<string, never>>('memory', { store: 'memory', count, variant }, { cpu: SERVER_CPU, nodeFlags: ['--expose-gc'] });
      let probe: MemoryProbeResult;
      try {
        probe = (await child.wait<{ result: MemoryProbeResult }>('result')).result;
      } finally {
        await child.stop();
      }
      log(`  ${variant}: ${Math.round(probe.rssBytesPerSession)} B RSS, ${Math.round(probe.heapBytesPerSession)} B heap per session`);
      const scored = count === 1_000_000 && variant === 'login';
      rows.push({
        id: '8',
        what: `RSS per idle session, memory store, ${count.toLocaleString('en-US')} sessions, ${variant === 'login' ? 'as a login leaves it' : 'after one exchange (holds its reply copy)'}`,
        figure: `${Math.round(probe.rssBytesPerSession)} B (heap ${Math.round(probe.heapBytesPerSession)} B)`,
        baseline: '',
        ratio: scored ? probe.rssBytesPerSession : undefined,
        target: scored ? '≤ 200 B' : '',
        meets: scored ? (r) => r <= 200 : undefined,
      });
    }
  });
}

await guarded('8', `RSS per idle session, the durable default store (lmdb), ${(1_000_000).toLocaleString('en-US')} sessions`, '', async () => {
  if (!has('src/store/index.ts')) throw new Error('src/store/index.ts not built yet');
  const child = await startChild<Record<string, never>>('memory', { store: 'lmdb', count: 1_000_000, variant: 'login' }, { cpu: SERVER_CPU, nodeFlags: ['--expose-gc'] });
  let probe: MemoryProbeResult;
  try {
    probe = (await child.wait<{ result: MemoryProbeResult }>('result')).result;
  } finally {
    await child.stop();
  }
  log(`  lmdb: ${Math.round(probe.rssBytesPerSession)} B RSS, ${Math.round(probe.heapBytesPerSession)} B heap per session`);
  rows.push({
    id: '8',
    what: 'RSS per idle session, lmdb store, 1,000,000 sessions, as a login leaves it',
    figure: `${Math.round(probe.rssBytesPerSession)} B (heap ${Math.round(probe.heapBytesPerSession)} B)`,
    baseline: '',
    ratio: undefined,
    target: '',
    note: 'the pages of the memory-mapped file it wrote; the page cache can drop them',
  });
});

await guarded('9', 'one connection, no pipelining: rotor p50 vs echo p50', '≤ 1.3 ×', async () => {
  const one = { connections: 1, pipeline: 1, scenario: 'rotate' as const };
  const [echo, memory] = await pair(
    ['echo 1×1', 'rotor memory 1×1'],
    [
      { ...one, spawn: { server: 'echo' } },
      { ...one, spawn: { server: 'rotor', store: 'memory' } },
    ],
    p50Of,
    false,
    // A latency floor of tens of µs is the first thing other work on the machine disturbs.
    ROUNDS + 1,
  );
  rows.push({ id: '9a', what: 'echo ceiling, 1×1: round-trip floor', figure: `p50 ${formatMicros(echo.latencyUs.p50)}, ${perSec(echo.throughput)}`, baseline: '', ratio: undefined, target: '' });
  rows.push({
    id: '9',
    what: 'rotor rotate, memory store, 1×1',
    figure: `p50 ${formatMicros(memory.latencyUs.p50)}, ${perSec(memory.throughput)}`,
    baseline: `p50 ${formatMicros(echo.latencyUs.p50)}`,
    ratio: memory.latencyUs.p50 / echo.latencyUs.p50,
    target: '≤ 1.3 ×',
    meets: (r) => r <= 1.3,
  });
});

// The other scenarios, for the record: no baseline, no target.
for (const scenario of ['meta', 'tasks', 'seats', 'login', 'ping'] as const) {
  await guarded(scenario, `${scenario}, memory store, ${C}×${P}`, '', async () => {
    const result = await load(`rotor memory ${scenario}`, { ...big, scenario, spawn: { server: 'rotor', store: 'memory' } });
    const extra = Object.entries(result.extra).map(([k, v]) => `${k} ${v}`).join(', ');
    const errors = Object.entries(result.errors).map(([k, v]) => `${k} ${v}`).join(', ');
    rows.push({
      id: scenario,
      what: `rotor ${scenario}, memory store, ${C}×${P}`,
      figure: describe(result),
      baseline: '',
      ratio: undefined,
      target: '',
      note:
        [
          extra,
          errors && `errors: ${errors}`,
          scenario === 'seats' && `take, heartbeat, give back, round and round; ${C * P} clients of one user for a pool of 256 seats, so half of them wait in line`,
          scenario === 'login' && `${C * P} logins in flight against a queue of 256 and 2 hashes at once: the rest are refused at once, by design; the bench user's scrypt N is 16`,
        ]
          .filter(Boolean)
          .join('; ') || undefined,
    });
  });
}

// Hand-over at the peer (spec §11): Ed25519 verification, in process (bench/handover.ts), against a login without a password.
await guarded('handover', 'hand-over token verified at the peer, vs a password-free login, in process', '', async () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', `${ROOT}bench/handover.ts`, '2000', '5'], { encoding: 'utf8', cwd: ROOT, timeout: 300_000 });
  const micros = (label: string) => {
    const found = new RegExp(`${label}: ([0-9.]+) µs`).exec(out);
    if (!found) throw new Error(`bench/handover.ts said no "${label}": ${out}`);
    return Number(found[1]);
  };
  const verify = micros('hand-over token verified');
  const login = micros('hand-over login \\(dispatcher\\)');
  const plain = micros('password-free login \\(POST /rotor/token\\)');
  rows.push({
    id: 'handover',
    what: 'hand-over at the peer (Ed25519), CPU per operation, in process',
    figure: `verify ${verify.toFixed(1)} µs (${Math.round(1e6 / verify).toLocaleString('en-US')} verifications/s per core), login ${login.toFixed(1)} µs`,
    baseline: `password-free login ${plain.toFixed(1)} µs`,
    ratio: undefined,
    target: '',
    note: `a hand-over login costs ${(login / plain).toFixed(1)} × a password-free one; nearly all of it the Ed25519 check`,
  });
});

// ---- the report ------------------------------------------------------------------------------------

const day = new Date().toISOString().slice(0, 10);
const resultsDir = `${ROOT}bench/results`;
mkdirSync(resultsDir, { recursive: true });
// A second run on one day gets its own file (-2, -3, …): the history keeps every run.
let date = day;
for (let n = 2; existsSync(`${resultsDir}/${date}.md`); n++) date = `${day}-${n}`;
const verdict = (row: Row) => (row.ratio === undefined || !row.meets ? (row.figure.startsWith('not available') ? 'n/a' : '') : row.meets(row.ratio) ? 'PASS' : 'MISS');
const ratioText = (row: Row) => (row.ratio === undefined || !row.meets ? '' : row.target.includes('B') ? `${Math.round(row.ratio)} B` : row.target.includes('×') ? `${row.ratio.toFixed(2)} ×` : `${(row.ratio * 100).toFixed(1)} %`);

const order = ['1', '2', '2q', '2s', '3', '4', '5', '6a', '6', '7', '8', '9a', '9', 'meta', 'tasks', 'seats', 'login', 'ping', 'handover'];
rows.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
const table = [
  '| # | what | figure | baseline | ratio | target | verdict |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map((row) => `| ${row.id} | ${row.what}${row.note ? ` (${row.note})` : ''} | ${row.figure} | ${row.baseline} | ${ratioText(row)} | ${row.target} | ${verdict(row)} |`),
].join('\n');

const details = [
  '| run | ok/s | p50 | p90 | p99 | p99.9 | errors | cpu load gen | cpu server |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...runs
    .filter((run) => run.result)
    .map((run) => {
      const r = run.result!;
      const l = r.latencyUs;
      const errors = Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
      return `| ${run.label} | ${r.throughput.toLocaleString('en-US')} | ${formatMicros(l.p50)} | ${formatMicros(l.p90)} | ${formatMicros(l.p99)} | ${formatMicros(l.p999)} | ${errors} | ${pct(r.cpu.load)} | ${r.cpu.server === null ? '?' : pct(r.cpu.server)} |`;
    }),
].join('\n');

const svg = await renderChart(runs.filter((run) => run.result).map((run) => ({ label: run.label, throughput: run.result!.throughput, p99Ms: run.result!.latencyUs.p99 / 1000 })));
writeFileSync(`${resultsDir}/${date}.svg`, svg);

const readings: string[] = [];
const echoRun = runs.find((run) => run.label.startsWith('echo ceiling') && run.result);
if (echoRun && echoRun.result!.cpu.load >= 0.9) {
  readings.push(
    `- The echo ceiling (row 1) was limited by the load generator (its CPU ${pct(echoRun.result!.cpu.load)}, the server's ${echoRun.result!.cpu.server === null ? '?' : pct(echoRun.result!.cpu.server)}): the real ceiling is higher, so row 2's ratio is if anything flattering.`,
  );
}
const minutes = ((Date.now() - started) / 60_000).toFixed(1);
const load1 = loadavg();
const report = `# rotor benchmark, ${date}

\`npm run bench\`: ${SECONDS} s measured after ${WARMUP} s warm-up per run, ${ROUNDS} alternating rounds per compared pair (${ROUNDS + 1} for the 1×1 latency pair; the best round of each side counts), ${minutes} min in all.
Servers and load generators run ${process.env.ROTOR_BENCH_COMPILED === '1' ? 'compiled (dist/, as `rotor serve` runs)' : 'from the sources through tsx'}, each in its own process${PINNED ? ", pinned with taskset: server on CPU 0, load generator (and redis-server) on CPU 1" : ' (not pinned: no taskset or fewer than 2 CPUs)'}.
Node ${process.version}, ${availableParallelism()} CPUs, load average ${load0.map((x) => x.toFixed(1)).join(' ')} at the start and ${load1.map((x) => x.toFixed(1)).join(' ')} at the end (other work on the machine skews absolute figures; the ratios compare runs made minutes apart at most).
Targets are reported, never asserted.

${table}
${readings.length > 0 ? `\n${readings.join('\n')}\n` : ''}
![throughput and p99 per run](${date}.svg)

## Every run

${details}
`;
writeFileSync(`${resultsDir}/${date}.md`, report);
const ratioOf = (id: string) => {
  const row = rows.find((r) => r.id === id && r.ratio !== undefined && r.meets);
  return row ? ratioText(row) : '';
};
const historyRow = `| [${date}](${date}.md) | ${ratioOf('2')} | ${ratioOf('9')} | ${ratioOf('3')} | ${ratioOf('4')} | ${ratioOf('6')} | ${ratioOf('7')} | ${ratioOf('8')} | (say what changed) |\n`;
appendFileSync(`${resultsDir}/history.md`, historyRow);
process.stdout.write(`${table}\n\nwritten: bench/results/${date}.md, bench/results/${date}.svg, a row in bench/results/history.md\n`);
