/**
 * `npx tsx bench/cluster.ts`: rotor nodes × one Redis Cluster (3 masters, 3 replicas on
 * loopback: test/helpers/redis-cluster.ts). Rotations/s with 1, 2 and 4 rotor processes, per
 * process and in total, next to bare ioredis on the same cluster (the Lua rotate of
 * src/bench/redis.ts, one EVALSHA per rotation) — each without and with the safe mode (WAIT 1
 * after every write) — and the CPU each costs: the rotor processes', the masters' and the
 * replicas' (INFO cpu), per rotation. Then the memory a session takes on Redis (MEMORY USAGE
 * of its key, and used_memory over many sessions).
 *
 * A rotor process here is the dispatcher on the cluster store, no carrier (bench/dispatch.ts):
 * `BENCH_SESSIONS` sessions (default 256), each sending its next token in turn, all in flight at
 * once; one exchange (GET /hello) is one rotation: a load and a commit script. Everything
 * shares this machine's cores (report: availableParallelism), so totals past one process say
 * where the CPU went more than what a bigger machine would do; docs/scale.md extrapolates from
 * the CPU per rotation.
 *
 * Environment: BENCH_SECONDS (measured, default 4), BENCH_WARMUP (default 1), BENCH_SESSIONS,
 * BENCH_PROCS (default "1,2,4"), BENCH_MEMORY_SESSIONS (default 20000).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Cluster, Redis } from 'ioredis';
import { exampleApp } from '../src/app/example.ts';
import { resolveConfig } from '../src/config/defaults.ts';
import { silentLogger } from '../src/log/index.ts';
import { Metrics, timedStore } from '../src/metrics/index.ts';
import { hashPassword } from '../src/server/auth.ts';
import { Rotor } from '../src/server/rotor.ts';
import { pooledRandom } from '../src/session/random.ts';
import { KeyRing } from '../src/session/token.ts';
import { keySlot, ReplicaWaits } from '../src/store/redis-cluster.ts';
import { RedisStore } from '../src/store/redis.ts';
import { getHeader, type RequestFrame } from '../src/wire/index.ts';
import { startRedisCluster, type RedisCluster } from '../test/helpers/redis-cluster.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 256);
const PROCS = (process.env.BENCH_PROCS ?? '1,2,4').split(',').map(Number);
const MEMORY_SESSIONS = Number(process.env.BENCH_MEMORY_SESSIONS ?? 20_000);
const SELF = fileURLToPath(import.meta.url);

/** What one child measured in the common window. */
interface ChildResult {
  rotations: number;
  errors: number;
  seconds: number;
  cpuSeconds: number;
}

const ROTATE_LUA = `
local current = redis.call('HGET', KEYS[1], 'h')
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'h', ARGV[2], 'r', ARGV[3], 'g', ARGV[4])
return 1
`;

if (process.argv[2] === 'child') await child(process.argv[3] as 'rotor' | 'bare', process.argv[4], Number(process.argv[5]));
else await parent();

// --- a child: set up, say READY, measure the window the parent gives, report ---

async function child(kind: 'rotor' | 'bare', url: string, wait: number): Promise<void> {
  const round = kind === 'rotor' ? await rotorRounds(url, wait) : await bareRounds(url, wait);
  process.stdout.write('READY\n');
  const [startAt, endAt] = await new Promise<number[]>((resolve) => {
    createInterface({ input: process.stdin }).once('line', (line) => resolve(line.split(' ').map(Number)));
  });
  // Warm up until the window opens, then count whole rounds inside it.
  while (Date.now() < startAt) await round.run();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let rotations = 0;
  let errors = 0;
  while (Date.now() < endAt) {
    const r = await round.run();
    rotations += r.ok;
    errors += r.errors;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const result: ChildResult = { rotations, errors, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  await round.close();
  process.exit(0);
}

interface Rounds {
  run(): Promise<{ ok: number; errors: number }>;
  close(): Promise<void>;
}

/** The dispatcher on the cluster store: SESSIONS logged-in sessions, each exchange rotating its token. */
async function rotorRounds(url: string, wait: number): Promise<Rounds> {
  const config = resolveConfig({ logLevel: 'error', auth: { scryptN: 1024 } });
  const random = pooledRandom();
  const metrics = new Metrics();
  const store = timedStore(await RedisStore.open(`${url}?wait=${wait}`), metrics);
  await store.putUser({ name: 'bench', passwordHash: await hashPassword('pw', config.auth, random), createdAt: Date.now() });
  const rotor = new Rotor({ config, store, app: exampleApp(), keys: KeyRing.generate(random), log: silentLogger(), metrics, random });
  const request = (path: string, headers: Array<[string, string]>): RequestFrame => ({ kind: 'request', verb: path === '/rotor/login' ? 'POST' : 'GET', path, headers, body: undefined });
  const tokens: string[] = [];
  for (let i = 0; i < SESSIONS; i++) tokens.push(getHeader((await rotor.dispatch(request('/rotor/login', [['User', 'bench'], ['Password', 'pw']]))).frame, 'Token')!);
  return {
    async run() {
      let ok = 0;
      let errors = 0;
      const replies = await Promise.all(tokens.map((token) => rotor.dispatch(request('/hello', [['Token', token]]))));
      replies.forEach((reply, i) => {
        const next = getHeader(reply.frame, 'Token');
        if (reply.status === 200 && next) {
          tokens[i] = next;
          ok++;
        } else errors++;
      });
      if (errors > 0 && ok === 0) throw new Error(`every exchange failed: ${replies[0].status} ${replies[0].error}`);
      return { ok, errors };
    },
    close: () => store.close(),
  };
}

/** Bare ioredis on the cluster: SESSIONS keys, each rotated by the Lua script; with `wait`, WAIT after each as the store's safe mode does. */
async function bareRounds(url: string, wait: number): Promise<Rounds> {
  const nodes = url.replace(/^redis-cluster:\/\//, '').split(',').map((hp) => ({ host: hp.split(':')[0], port: Number(hp.split(':')[1]) }));
  const cluster = new Cluster(nodes, { enableAutoPipelining: true, scripts: { rotate: { lua: ROTATE_LUA, numberOfKeys: 1 } } }) as Cluster & {
    rotate(key: string, current: string, next: string, reply: string, gen: number): Promise<number>;
  };
  await new Promise<void>((resolve, reject) => cluster.once('ready', resolve).once('error', reject));
  const waits = wait > 0 ? new ReplicaWaits(wait, 500) : undefined;
  const nodeOf = (key: string): Redis | undefined => {
    const owner = cluster.slots[keySlot(key)]?.[0];
    return cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
  };
  const reply = 'x'.repeat(160);
  const lanes = Array.from({ length: SESSIONS }, () => ({ key: `bench:{${randomBytes(8).toString('hex')}}`, gen: 1 }));
  await Promise.all(lanes.map((lane) => cluster.hset(lane.key, 'h', `${lane.key}:1`, 'r', reply, 'g', 1)));
  return {
    async run() {
      let ok = 0;
      let errors = 0;
      await Promise.all(
        lanes.map(async (lane) => {
          try {
            if ((await cluster.rotate(lane.key, `${lane.key}:${lane.gen}`, `${lane.key}:${lane.gen + 1}`, reply, lane.gen + 1)) !== 1) throw new Error('stale');
            if (waits) await waits.after(nodeOf(lane.key));
            lane.gen++;
            ok++;
          } catch {
            errors++;
          }
        }),
      );
      return { ok, errors };
    },
    close: async () => {
      cluster.disconnect();
    },
  };
}

// --- the parent: the cluster, the runs, the table ---

async function parent(): Promise<void> {
  const cluster = await startRedisCluster();
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    process.stdout.write(`${line}\n`);
  };
  try {
    const roles = await cluster.topology();
    const masters = roles.filter((n) => n.role === 'master').map((n) => n.port);
    const replicas = roles.filter((n) => n.role === 'replica').map((n) => n.port);
    say(`# rotor × Redis Cluster (3 masters + 3 replicas, loopback), ${new Date().toISOString()}`);
    say(`machine: ${availableParallelism()} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; redis-server, rotor processes and load share them`);
    say(`window ${SECONDS} s after ${WARMUP} s warm-up; ${SESSIONS} sessions (keys) in flight per process`);
    say('');
    say('| what | procs | wait | rotations/s total | per process | process CPU µs/rotation | masters CPU µs/rotation | replicas CPU µs/rotation | errors |');
    say('|---|---|---|---|---|---|---|---|---|');
    const rows: { kind: string; procs: number; wait: number; total: number }[] = [];
    for (const kind of ['bare', 'rotor'] as const) {
      for (const procs of kind === 'bare' ? [1, Math.max(...PROCS)] : PROCS) {
        for (const wait of [0, 1]) {
          const r = await measure(cluster, kind, procs, wait, masters, replicas);
          rows.push({ kind, procs, wait, total: r.total });
          const label = kind === 'bare' ? 'bare ioredis Cluster, Lua rotate (EVALSHA)' + (wait ? ' + WAIT 1' : '') : 'rotor dispatcher on the redis-cluster store' + (wait ? ' (safe mode)' : ' (?wait=0)');
          say(
            `| ${label} | ${procs} | ${wait} | ${fmt(r.total)} | ${r.perProcess.map(fmt).join(' / ')} | ${r.cpuPerRotation.toFixed(1)} | ${r.mastersPerRotation.toFixed(1)} | ${r.replicasPerRotation.toFixed(1)} | ${r.errors} |`,
          );
        }
      }
    }
    say('');
    for (const procs of PROCS) {
      const fast = rows.find((r) => r.kind === 'rotor' && r.procs === procs && r.wait === 0)?.total;
      const safe = rows.find((r) => r.kind === 'rotor' && r.procs === procs && r.wait === 1)?.total;
      if (fast && safe) say(`safe mode, ${procs} rotor process(es): ${fmt(safe)} vs ${fmt(fast)} rotations/s (${((safe / fast) * 100).toFixed(0)} %)`);
    }
    say('');
    for (const line of await sessionMemory(cluster, masters)) say(line);
  } finally {
    await cluster.close();
  }
}

async function measure(cluster: RedisCluster, kind: 'rotor' | 'bare', procs: number, wait: number, masters: number[], replicas: number[]) {
  const children: { proc: ChildProcess; result: Promise<ChildResult> }[] = [];
  for (let i = 0; i < procs; i++) {
    const proc = spawn(process.execPath, ['--import', 'tsx', SELF, 'child', kind, cluster.url, String(wait)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: proc.stdout! });
    const ready = new Promise<void>((resolve, reject) => {
      lines.on('line', (line) => line === 'READY' && resolve());
      proc.once('exit', (code) => reject(new Error(`a ${kind} child exited (${code}) before it was ready`)));
    });
    const result = new Promise<ChildResult>((resolve, reject) => {
      lines.on('line', (line) => line.startsWith('RESULT ') && resolve(JSON.parse(line.slice(7)) as ChildResult));
      proc.once('exit', (code) => reject(new Error(`a ${kind} child exited (${code}) without a result`)));
    });
    result.catch(() => {});
    children.push({ proc, result });
    await ready;
  }
  try {
    const startAt = Date.now() + WARMUP * 1000;
    const endAt = startAt + SECONDS * 1000;
    for (const { proc } of children) proc.stdin!.write(`${startAt} ${endAt}\n`);
    await new Promise((resolve) => setTimeout(resolve, startAt - Date.now()));
    const before = await redisCpu([...masters, ...replicas]);
    await new Promise((resolve) => setTimeout(resolve, endAt - Date.now()));
    const after = await redisCpu([...masters, ...replicas]);
    const results = await Promise.all(children.map((c) => c.result));
    const perProcess = results.map((r) => r.rotations / r.seconds);
    const rotations = results.reduce((sum, r) => sum + r.rotations, 0);
    const cpuOf = (ports: number[]) => ports.reduce((sum, p) => sum + (after.get(p)! - before.get(p)!), 0);
    return {
      total: perProcess.reduce((a, b) => a + b, 0),
      perProcess,
      errors: results.reduce((sum, r) => sum + r.errors, 0),
      cpuPerRotation: (results.reduce((sum, r) => sum + r.cpuSeconds, 0) / rotations) * 1e6,
      mastersPerRotation: (cpuOf(masters) / rotations) * 1e6,
      replicasPerRotation: (cpuOf(replicas) / rotations) * 1e6,
    };
  } finally {
    for (const { proc } of children) if (proc.exitCode === null) proc.kill('SIGKILL');
  }
}

/** used_cpu_user + used_cpu_sys (seconds) of each node. */
async function redisCpu(ports: number[]): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  await Promise.all(
    ports.map(async (port) => {
      const redis = new Redis({ host: '127.0.0.1', port });
      const info = await redis.info('cpu');
      redis.disconnect();
      const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
      out.set(port, field('used_cpu_user') + field('used_cpu_sys'));
    }),
  );
  return out;
}

/** What a rotor session takes on Redis: MEMORY USAGE of session keys, and used_memory over MEMORY_SESSIONS more, rotated once. */
async function sessionMemory(cluster: RedisCluster, masters: number[]): Promise<string[]> {
  const prefix = `mem${process.pid}`;
  const store = await RedisStore.open(cluster.url, { prefix });
  const clients = new Map(masters.map((port) => [port, new Redis({ host: '127.0.0.1', port })]));
  try {
    const used = async () => {
      let sum = 0;
      for (const redis of clients.values()) sum += Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1] ?? 0);
      return sum;
    };
    const before = await used();
    const now = Date.now();
    const ids = Array.from({ length: MEMORY_SESSIONS }, () => randomBytes(16).toString('base64url'));
    // As rotor stores a session after one exchange: a 22-char token hash, the previous one, a /hello reply (~190 bytes with its Token header) kept for replay.
    const reply = Buffer.from(`ROTOR/1 200 OK\r\nToken: ${'t'.repeat(120)}\r\nContent-Type: text/plain; charset=utf-8\r\nBIN-Length: 12\r\n\r\nhello, bench`);
    const state = (id: string) => ({
      id, user: 'bench', rev: 0, gen: 1, tokenHash: randomBytes(16).toString('base64url'), acked: true, prev: null,
      held: [], meta: {}, createdAt: now, expiresAt: now + 7_200_000, revoked: null, quota: null, seal: null,
    });
    for (let i = 0; i < ids.length; i += 1000) {
      await Promise.all(ids.slice(i, i + 1000).map(async (id) => {
        const s = state(id);
        await store.createSession(s);
        await store.commitSession({ ...s, gen: 2, acked: false, tokenHash: randomBytes(16).toString('base64url'), prev: { hash: s.tokenHash, reply } }, 0, []);
      }));
    }
    const after = await used();
    const samples: number[] = [];
    for (const id of ids.slice(0, 50)) {
      const key = `${prefix}:{${id}}:s`;
      samples.push(Number(await clients.get(await cluster.masterOf(key))!.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')));
    }
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    // The sessions the rotor runs left (prefix rotor): real records, as the dispatcher wrote them.
    const real: number[] = [];
    for (const redis of clients.values()) {
      const [, keys] = await redis.scan('0', 'MATCH', 'rotor:{*}:s', 'COUNT', 200);
      for (const key of keys.slice(0, 20)) real.push(Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')));
    }
    const realLine = real.length
      ? [`MEMORY USAGE of sessions the rotor runs left (GET /hello of the example app, its reply kept): ${Math.round(real.reduce((a, b) => a + b, 0) / real.length)} B (mean of ${real.length}, ${Math.min(...real)}–${Math.max(...real)})`]
      : [];
    return [
      ...realLine,
      `session memory on Redis: MEMORY USAGE of a session key (one exchange done, ${reply.length}-byte reply kept) ${Math.round(mean)} B (mean of ${samples.length}, ${Math.min(...samples)}–${Math.max(...samples)});`,
      `used_memory over ${MEMORY_SESSIONS.toLocaleString('en')} such sessions on the 3 masters: ${Math.round((after - before) / MEMORY_SESSIONS)} B per session (key, hash, TTL entry and allocator overhead); each replica holds the same again`,
    ];
  } finally {
    await store.close();
    for (const redis of clients.values()) redis.disconnect();
  }
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en');
}
