/**
 * A throwaway Redis Cluster for the tests (and bench/cluster.ts): 3 masters and 3 replicas by
 * default, each a `redis-server` on a free 127.0.0.1 port (its cluster bus on another free port),
 * no persistence, their nodes-<port>.conf in one temp directory. `startRedisCluster()` runs
 * `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes` and resolves once every node
 * says `cluster_state:ok` and every master has its replicas online; it rejects — loudly, never a
 * skip — when redis-server or redis-cli cannot be run or the cluster does not form within
 * `readyTimeoutMs`, having killed what it started. `close()` kills every node and removes the
 * directory (register it with t.teardown: it runs when a test fails too); a process exit kills
 * the nodes all the same.
 *
 * Each node can be SIGKILLed (`stop('SIGKILL')`), frozen (`pause()`), and started again on the
 * same port with its nodes.conf (`start()`): it comes back empty (nothing is persisted) and takes
 * the role the cluster gives it — a master whose replica was promoted meanwhile rejoins as that
 * replica's replica.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { keySlot } from '../../src/store/redis-cluster.ts';

export interface ClusterNodeProcess {
  readonly port: number;
  readonly busPort: number;
  readonly running: boolean;
  readonly pid: number | undefined;
  /** SIGTERM (or SIGKILL: a crash), and wait until the process is gone. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Start it again on the same ports with its nodes.conf (empty: nothing was persisted). */
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT. */
  pause(): void;
  resume(): void;
}

export interface ClusterNodeInfo {
  port: number;
  role: 'master' | 'replica';
  /** A replica's master (by port). */
  masterPort?: number;
  /** Slot ranges a master serves, inclusive. */
  slots: [number, number][];
  /** The node is marked failing (fail or fail?) by the node asked. */
  failing: boolean;
}

export interface RedisCluster {
  readonly nodes: readonly ClusterNodeProcess[];
  readonly ports: readonly number[];
  /** redis-cluster://127.0.0.1:p1,127.0.0.1:p2,… (every node). */
  readonly url: string;
  node(port: number): ClusterNodeProcess;
  /** CLUSTER INFO of one node, as fields. */
  info(port: number): Promise<Record<string, string>>;
  /** The cluster as a running node sees it (CLUSTER NODES). */
  topology(): Promise<ClusterNodeInfo[]>;
  /** The port of the master serving `key` (hash tags count) or a slot number. */
  masterOf(keyOrSlot: string | number): Promise<number>;
  /** The ports of a master's replicas. */
  replicasOf(masterPort: number): Promise<number[]>;
  /**
   * Resolve once every running node says cluster_state:ok, agrees with the others on who serves
   * every slot, no master serving slots is stopped, and every master has `replicas` replicas
   * online (default: the replicas per master it was created with; 0 after a failover until the
   * dead master is back). Rejects after `timeoutMs` (default 30 s) with what it saw last.
   */
  waitUntilOk(options?: { timeoutMs?: number; replicas?: number }): Promise<void>;
  /** Stop every node (SIGKILL by default: the cluster is gone at once). */
  stopAll(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Start every stopped node again, on the same ports with their nodes.conf. */
  startAll(): Promise<void>;
  close(): Promise<void>;
}

export interface StartRedisClusterOptions {
  masters?: number;
  replicasPerMaster?: number;
  /** cluster-node-timeout: how long a node may be silent before it is taken as failing. Default 2000 ms. */
  nodeTimeoutMs?: number;
  /** The cluster must form within this. Default 30 s. */
  readyTimeoutMs?: number;
  binary?: string;
  cli?: string;
}

const PROCESS_READY_MS = 5_000;

export async function startRedisCluster(options: StartRedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const perMaster = options.replicasPerMaster ?? 1;
  const count = masters * (1 + perMaster);
  const binary = options.binary ?? 'redis-server';
  const cli = options.cli ?? 'redis-cli';
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const dir = mkdtempSync(join(tmpdir(), 'rotor-cluster-'));
  const [ports, busPorts] = await freePorts(count, 2);
  const nodes = ports.map((port, i) => nodeProcess(binary, dir, port, busPorts[i], options.nodeTimeoutMs ?? 2_000));
  const killAll = () => {
    for (const node of nodes) node.killNow();
  };
  process.on('exit', killAll);
  const close = async () => {
    await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
    process.off('exit', killAll);
    rmSync(dir, { recursive: true, force: true });
  };

  const query = async <T>(port: number, work: (redis: Redis) => Promise<T>): Promise<T> => {
    const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 1_000, commandTimeout: 2_000 });
    redis.on('error', () => {});
    try {
      await redis.connect();
      return await work(redis);
    } finally {
      redis.disconnect();
    }
  };
  const info = async (port: number) => parseInfo(await query(port, (r) => r.cluster('INFO') as Promise<string>));
  const topology = async (): Promise<ClusterNodeInfo[]> => {
    let last: unknown = new Error('no node is running');
    for (const node of nodes.filter((n) => n.running)) {
      try {
        return parseNodes(await query(node.port, (r) => r.cluster('NODES') as Promise<string>));
      } catch (err) {
        last = err;
      }
    }
    throw last;
  };
  const masterOf = async (keyOrSlot: string | number): Promise<number> => {
    const slot = typeof keyOrSlot === 'number' ? keyOrSlot : keySlot(keyOrSlot);
    const master = (await topology()).find((n) => n.role === 'master' && !n.failing && n.slots.some(([from, to]) => slot >= from && slot <= to));
    if (!master) throw new Error(`no master serves slot ${slot}`);
    return master.port;
  };
  const replicasOf = async (masterPort: number) => (await topology()).filter((n) => n.role === 'replica' && n.masterPort === masterPort).map((n) => n.port);

  const waitUntilOk = async ({ timeoutMs = 30_000, replicas = perMaster } = {}): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let seen = 'nothing yet';
    for (;;) {
      try {
        seen = await clusterProblem(nodes, query, replicas);
        if (seen === '') return;
      } catch (err) {
        seen = String(err);
      }
      if (Date.now() > deadline) throw new Error(`the Redis Cluster on ${ports.join(',')} is not ok after ${timeoutMs} ms: ${seen}`);
      await sleep(100);
    }
  };

  try {
    await Promise.all(nodes.map((node) => node.start()));
    const created = await run(cli, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(perMaster), '--cluster-yes'], readyTimeoutMs);
    if (created.code !== 0) throw new Error(`${cli} --cluster create failed (${created.code}):\n${created.output}`);
    await waitUntilOk({ timeoutMs: readyTimeoutMs });
  } catch (err) {
    await close();
    throw new Error(`the Redis Cluster could not be started: ${(err as Error).message}`);
  }

  return {
    nodes,
    ports,
    url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    node: (port) => {
      const node = nodes.find((n) => n.port === port);
      if (!node) throw new Error(`no node on port ${port}`);
      return node;
    },
    info,
    topology,
    masterOf,
    replicasOf,
    waitUntilOk,
    stopAll: async (signal = 'SIGKILL') => {
      await Promise.all(nodes.map((node) => node.stop(signal)));
    },
    startAll: async () => {
      await Promise.all(nodes.filter((node) => !node.running).map((node) => node.start()));
    },
    close,
  };
}

/** What keeps the cluster from being ok, '' when nothing does. */
async function clusterProblem(nodes: readonly (ClusterNodeProcess & { killNow(): void })[], query: <T>(port: number, work: (r: Redis) => Promise<T>) => Promise<T>, replicas: number): Promise<string> {
  const running = nodes.filter((n) => n.running);
  if (running.length === 0) return 'no node is running';
  const views = await Promise.all(
    running.map(async (node) => {
      const [infoText, nodesText] = await query(node.port, (r) => Promise.all([r.cluster('INFO') as Promise<string>, r.cluster('NODES') as Promise<string>]));
      return { port: node.port, info: parseInfo(infoText), topology: parseNodes(nodesText) };
    }),
  );
  for (const view of views) if (view.info.cluster_state !== 'ok') return `node ${view.port}: cluster_state:${view.info.cluster_state}`;
  const owners = (view: (typeof views)[number]) =>
    view.topology
      .filter((n) => n.role === 'master' && n.slots.length > 0)
      .map((n) => `${n.port}=${n.slots.map(([a, b]) => `${a}-${b}`).join('+')}`)
      .sort()
      .join(' ');
  const first = owners(views[0]);
  for (const view of views) if (owners(view) !== first) return `nodes ${views[0].port} and ${view.port} disagree on the slots: ${first} / ${owners(view)}`;
  for (const view of views) {
    for (const master of view.topology.filter((n) => n.role === 'master' && n.slots.length > 0)) {
      const known = view.topology.filter((n) => n.role === 'replica' && n.masterPort === master.port && !n.failing).length;
      if (known < replicas) return `node ${view.port} knows ${known} of ${replicas} replicas of ${master.port}`;
    }
  }
  const covered = views[0].topology.filter((n) => n.role === 'master').reduce((sum, n) => sum + n.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0);
  if (covered !== 16384) return `${covered} of 16384 slots served`;
  for (const master of views[0].topology.filter((n) => n.role === 'master' && n.slots.length > 0)) {
    if (!running.some((n) => n.port === master.port)) return `master ${master.port} serves slots but is stopped`;
    const online = await query(master.port, async (r) => (await r.info('replication')).split('\n').filter((line) => /^slave\d+:.*state=online/.test(line)).length);
    if (online < replicas) return `master ${master.port} has ${online} of ${replicas} replicas online`;
  }
  return '';
}

function nodeProcess(binary: string, dir: string, port: number, busPort: number, nodeTimeoutMs: number): ClusterNodeProcess & { killNow(): void } {
  let child: ChildProcess | undefined;
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-port', String(busPort),
    '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', String(nodeTimeoutMs),
    // A shard whose master is down fails its own keys only, not the whole cluster (docs/scale.md).
    '--cluster-require-full-coverage', 'no',
    // A replica (re)joining syncs at once, not after the default 5 s of waiting for others.
    '--repl-diskless-sync-delay', '0',
    '--appendonly', 'no', '--save', '', '--dir', dir, '--dbfilename', `dump-${port}.rdb`, '--daemonize', 'no',
  ];
  const start = async (): Promise<void> => {
    if (child) throw new Error(`the node on ${port} is already running`);
    const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    proc.once('exit', () => {
      if (child === proc) child = undefined;
    });
    let output = '';
    proc.stdout!.on('data', (chunk) => (output = (output + chunk).slice(-4000)));
    proc.stderr!.on('data', (chunk) => (output = (output + chunk).slice(-4000)));
    const failed = new Promise<never>((_, reject) => {
      proc.once('error', (err) => reject(new Error(`cannot run ${binary}: ${err.message}`)));
      proc.once('exit', (code, signal) => reject(new Error(`${binary} exited (${code ?? signal}) before it was ready:\n${output}`)));
    });
    failed.catch(() => {});
    try {
      await Promise.race([failed, waitForPong(port)]);
    } catch (err) {
      proc.kill('SIGKILL');
      child = undefined;
      throw new Error(`redis-server could not be started on 127.0.0.1:${port}: ${(err as Error).message}`);
    }
  };
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
      child = undefined;
      return;
    }
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGCONT');
    proc.kill(signal);
    await exited;
    child = undefined;
  };
  return {
    port,
    busPort,
    get running() {
      return child !== undefined;
    },
    get pid() {
      return child?.pid;
    },
    start,
    stop,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    killNow: () => child?.kill('SIGKILL'),
  };
}

/** Run a program to its end (at most `limitMs`); rejects if it cannot be run at all. */
function run(program: string, args: string[], limitMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout!.on('data', (chunk) => (output += chunk));
    proc.stderr!.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${program} ${args.slice(0, 2).join(' ')} did not end within ${limitMs} ms:\n${output}`));
    }, limitMs);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${program} (install redis-tools): ${err.message}`));
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** `count` distinct free ports, `sets` times over (all held open until all are chosen). */
async function freePorts(count: number, sets: number): Promise<number[][]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count * sets; i++) {
      servers.push(
        await new Promise<Server>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
      );
    }
    const ports = servers.map((s) => (s.address() as { port: number }).port);
    return Array.from({ length: sets }, (_, i) => ports.slice(i * count, (i + 1) * count));
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

async function waitForPong(port: number): Promise<void> {
  const deadline = Date.now() + PROCESS_READY_MS;
  for (;;) {
    const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 500 });
    redis.on('error', () => {});
    try {
      await redis.connect();
      if ((await redis.ping()) === 'PONG') return;
    } catch {
      // not yet
    } finally {
      redis.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`no PONG within ${PROCESS_READY_MS} ms`);
    await sleep(30);
  }
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1).trim();
  }
  return out;
}

/** CLUSTER NODES: `<id> <ip:port@cport> <flags> <master id|-> <ping> <pong> <epoch> <link> <slot> …` */
function parseNodes(text: string): ClusterNodeInfo[] {
  const rows = text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.trim().split(' '));
  const portOf = new Map(rows.map((r) => [r[0], Number(r[1].split('@')[0].split(':').pop())]));
  return rows.map((r) => {
    const flags = r[2].split(',');
    const slots = r
      .slice(8)
      .filter((s) => !s.startsWith('['))
      .map((s) => {
        const [from, to] = s.split('-').map(Number);
        return [from, to ?? from] as [number, number];
      });
    const replica = flags.includes('slave');
    return {
      port: portOf.get(r[0])!,
      role: replica ? 'replica' : 'master',
      ...(replica ? { masterPort: portOf.get(r[3]) } : {}),
      slots,
      failing: flags.includes('fail') || flags.includes('fail?'),
    };
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
