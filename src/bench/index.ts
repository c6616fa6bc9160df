/**
 * rotor's load benchmark as a library: `runBench(options)` drives a running rotor (or one it
 * starts in a child process) and returns throughput, latency percentiles and errors by code.
 * `rotor bench` is a thin CLI over it; `npm run bench` (bench/run.ts) compares it with its
 * baselines.
 */
import { DEFAULTS } from '../config/defaults.ts';
import { getCarrier } from './carriers.ts';
import { drive, type Tick } from './loadgen.ts';
import { assertLoopback } from './loopback.ts';
import { scenarioDriver } from './scenarios.ts';
import { pinProcess, startChild } from './spawn.ts';
import { SCENARIOS, type BenchOptions, type BenchResult, type Scenario } from './types.ts';

export type { BenchOptions, BenchResult, Scenario, SpawnOptions, CarrierName, LatencySummary } from './types.ts';
export { SCENARIOS } from './types.ts';
export { registerCarrier, carrierNames, CarrierUnavailable, type Carrier, type FramePipe, type PipeEvents } from './carriers.ts';
export { isLoopback } from './loopback.ts';
export { startEchoServer, startHttpEchoServer, startRotorServer, echoHandler, type BenchServer } from './servers.ts';

export const BENCH_DEFAULTS = {
  scenario: 'rotate' as Scenario,
  carrier: 'tcp',
  host: '127.0.0.1',
  port: DEFAULTS.port,
  connections: 16,
  pipeline: 32,
  durationMs: 5_000,
  warmupMs: 1_000,
  user: 'bench',
  password: 'bench',
  timeoutMs: 10_000,
} as const;

function positiveInt(name: string, value: number, min = 1): number {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${name} must be an integer ≥ ${min}, got ${value}`);
  return value;
}

/** Drive a rotor with load and report what it did. Rejects on a setup failure (cannot connect, login refused). */
export async function runBench(options: BenchOptions = {}): Promise<BenchResult> {
  const o = { ...BENCH_DEFAULTS, ...options };
  const scenario = o.scenario;
  if (!SCENARIOS.includes(scenario)) throw new RangeError(`unknown scenario ${JSON.stringify(scenario)} (${SCENARIOS.join(', ')})`);
  assertLoopback(o.host);
  positiveInt('connections', o.connections);
  positiveInt('pipeline', o.pipeline);
  positiveInt('durationMs', o.durationMs);
  positiveInt('warmupMs', o.warmupMs, 0);
  positiveInt('timeoutMs', o.timeoutMs);
  if (o.count !== undefined) positiveInt('count', o.count);
  const carrier = await getCarrier(o.carrier);
  if (o.cpu !== undefined) pinProcess(process.pid, o.cpu);

  let port = o.port;
  let server: Awaited<ReturnType<typeof startChild<{ port: number; httpPort?: number }>>> | undefined;
  if (o.spawn) {
    const { cpu, nodeFlags, ...payload } = o.spawn;
    if (o.carrier === 'tls') throw new RangeError('a spawned server has no certificate: start a TLS rotor yourself and give its port');
    const overHttp = o.carrier === 'http' || o.carrier === 'ws';
    if (overHttp && (payload.server ?? 'rotor') === 'rotor') payload.http = true;
    server = await startChild<{ port: number; httpPort?: number }>('server', { ...payload, user: o.user, password: o.password }, { cpu, nodeFlags });
    port = overHttp ? server.ready.httpPort ?? server.ready.port : server.ready.port;
  }
  const progress = o.progress ?? process.stderr.isTTY === true;
  const label = `${scenario} ${o.carrier} ${o.connections}×${o.pipeline}`;
  try {
    const run = await drive(carrier, { host: o.host, port }, scenarioDriver(scenario, o), {
      connections: o.connections,
      pipeline: o.pipeline,
      warmupMs: o.warmupMs,
      durationMs: o.durationMs,
      count: o.count,
      timeoutMs: o.timeoutMs,
      credentials: { user: o.user, password: o.password },
      onTick: progress ? (tick) => process.stderr.write(`\r\x1b[K${progressLine(label, tick)}`) : undefined,
      serverCpuMicros: server ? async () => (await server!.ask<{ micros: number }>({ type: 'cpu' })).micros : undefined,
    });
    if (progress) process.stderr.write('\r\x1b[K');
    const seconds = run.durationMs / 1000;
    return {
      format: 'rotor-bench/1',
      scenario,
      carrier: o.carrier,
      target: { host: o.host, port, spawned: o.spawn ?? null },
      connections: o.connections,
      pipeline: o.pipeline,
      warmupMs: o.warmupMs,
      durationMs: Math.round(run.durationMs),
      requests: run.requests,
      ok: run.ok,
      throughput: seconds > 0 ? Math.round(run.ok / seconds) : 0,
      responseRate: seconds > 0 ? Math.round(run.requests / seconds) : 0,
      latencyUs: run.latency.summary(),
      errors: run.errors,
      extra: run.extra,
      cpu: { load: round2(run.loadCpu), server: run.serverCpu === null ? null : round2(run.serverCpu) },
      setupMs: Math.round(run.setupMs),
    };
  } finally {
    await server?.stop();
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function progressLine(label: string, tick: Tick): string {
  const p99 = tick.p99Us > 0 ? `  p99 ${formatMicros(tick.p99Us)}` : '';
  return `[${label}] ${(tick.elapsedMs / 1000).toFixed(0)}s ${tick.phase}  ${Math.round(tick.rate).toLocaleString('en-US')} resp/s${p99}  errors ${tick.errors}`;
}

export function formatMicros(us: number): string {
  if (us >= 10_000) return `${(us / 1000).toFixed(0)} ms`;
  if (us >= 1_000) return `${(us / 1000).toFixed(2)} ms`;
  return `${us} µs`;
}

/** The human-readable report of one run. */
export function formatResult(result: BenchResult): string {
  const l = result.latencyUs;
  const errors = Object.entries(result.errors).sort((a, b) => b[1] - a[1]);
  const extra = Object.entries(result.extra);
  const lines = [
    `${result.scenario} over ${result.carrier} to ${result.target.host}:${result.target.port}, ${result.connections} connections × ${result.pipeline} in flight, ${(result.durationMs / 1000).toFixed(1)} s measured after ${(result.warmupMs / 1000).toFixed(1)} s warm-up`,
    `  throughput  ${result.throughput.toLocaleString('en-US')} ok/s  (${result.responseRate.toLocaleString('en-US')} responses/s, ${result.requests.toLocaleString('en-US')} measured)`,
    `  latency     p50 ${formatMicros(l.p50)}  p90 ${formatMicros(l.p90)}  p99 ${formatMicros(l.p99)}  p99.9 ${formatMicros(l.p999)}  max ${formatMicros(l.max)}`,
    `  errors      ${errors.length === 0 ? 'none' : errors.map(([code, n]) => `${code} ${n}`).join(', ')}`,
  ];
  if (extra.length > 0) lines.push(`  counts      ${extra.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(`  cpu         load generator ${Math.round(result.cpu.load * 100)} %${result.cpu.server === null ? '' : `, server ${Math.round(result.cpu.server * 100)} %`}  (setup ${result.setupMs} ms)`);
  return lines.join('\n');
}
