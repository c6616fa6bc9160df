/** The load benchmark's vocabulary: what a run is asked to do and what it reports. */

/** What each lane (one session) does, over and over. */
export type Scenario =
  /** POST /rotor/login again and again: every success is a new session (password hashing bound). */
  | 'login'
  /** The core loop: GET /hello, and the reply's token carries the next request (which acks it). */
  | 'rotate'
  /** PUT /rotor/token with a small JSON merge; the reply is the whole metadata. */
  | 'meta'
  /** POST /reverse (202 + Task), then GET /rotor/tasks/<id> until the result is there. */
  | 'tasks'
  /** POST, POST, DELETE /rotor/seats/bench: take a licence seat (or wait in line), heartbeat, give it back. */
  | 'seats'
  /** No session at all: GET /rotor/ping, to see the frame path alone on a rotor server. */
  | 'ping';

/** The seat pool every bench rotor has (spec §9); the other scenarios never touch it. */
export const BENCH_POOL = 'bench';

export const SCENARIOS: readonly Scenario[] = ['login', 'rotate', 'meta', 'tasks', 'seats', 'ping'];

/** How the frames travel. `tcp` and `tls` are built in; others register themselves (carriers.ts). */
export type CarrierName = 'tcp' | 'tls' | 'http' | 'ws' | (string & {});

/** Start a server for the run in a child process instead of driving one that is already running. */
export interface SpawnOptions {
  /**
   * What to start: rotor itself, or a ceiling answering the same bytes with no token work —
   * `echo` (rotor's own framing code, TCP) or `http-echo` (a bare node:http server).
   */
  server?: 'rotor' | 'echo' | 'http-echo';
  /** rotor: also listen for HTTP and WebSocket (needed for the http and ws carriers). */
  http?: boolean;
  /** memory | lmdb | redis://127.0.0.1:port/db (anything src/store/index.ts's openStore takes). */
  store?: string;
  /** Directory for an embedded store; a fresh temporary one when not given. */
  dataDir?: string;
  /** Idle sessions put into the store before the run (as if that many clients were logged in). */
  preload?: number;
  /** Pin the server to this CPU (taskset), when taskset is there. */
  cpu?: number;
  /** Extra node flags for the server, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/prof']. */
  nodeFlags?: string[];
}

export interface BenchOptions {
  scenario?: Scenario;
  carrier?: CarrierName;
  /** Loopback only: anything else is refused before a socket is opened. */
  host?: string;
  /** The server's port (ignored when `spawn` is set). */
  port?: number;
  spawn?: SpawnOptions;
  /** Connections, each with `pipeline` lanes (sessions) in flight. */
  connections?: number;
  pipeline?: number;
  /** Measured time, after the warm-up. */
  durationMs?: number;
  /** Requests sent before measuring starts (JIT, caches, connection setup), in ms. */
  warmupMs?: number;
  /** Stop after this many measured requests (whichever of count and duration comes first). */
  count?: number;
  /** The user the lanes log in as; a spawned server creates it (with a cheap hash). */
  user?: string;
  password?: string;
  /** A progress line on stderr once a second; default: when stderr is a TTY. */
  progress?: boolean;
  /** Pin the load generator (this process) to this CPU, when taskset is there. */
  cpu?: number;
  /** Give up on a response after this long (it counts as a TIMEOUT error and the run ends). */
  timeoutMs?: number;
}

export interface LatencySummary {
  /** Microseconds. */
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface BenchResult {
  /** Bumped when a field changes meaning. */
  format: 'rotor-bench/1';
  scenario: Scenario;
  carrier: CarrierName;
  target: { host: string; port: number; spawned: SpawnOptions | null };
  connections: number;
  pipeline: number;
  warmupMs: number;
  /** The measured window, wall clock. */
  durationMs: number;
  /** Responses in the measured window: successes and errors. */
  requests: number;
  ok: number;
  /** Successful responses per second: the headline. */
  throughput: number;
  /** All responses per second, errors included. */
  responseRate: number;
  /** Request latency, send to parsed response, of every measured response. */
  latencyUs: LatencySummary;
  /** Error code (the Error header, or TIMEOUT / CLOSED / NO_TOKEN / BAD_REPLY) → count. */
  errors: Record<string, number>;
  /** Scenario-specific counts (tasks: completed, polls that were still 202). */
  extra: Record<string, number>;
  /** CPU time / wall time of the measured window: 1 = one core busy all the time. */
  cpu: { load: number; server: number | null };
  setupMs: number;
}
