import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ErrorCode } from '../errors.ts';
import type { Carrier } from '../transport/admission.ts';
import { TallyCounter, TallyHistogram, type HistogramSeries, type Tally } from './tally.ts';

/** What a frame asked for; `unrouted` when it reached no operation (unknown /rotor/ path, wrong verb, not a request). */
export const OPERATIONS = ['login', 'token', 'resume', 'ack', 'logout', 'delete', 'meta', 'task', 'seats', 'quota', 'revocations', 'seal', 'app', 'ping', 'unrouted'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** The outcomes that end a session at a limit of its access code (spec §10). */
const QUOTA_ENDINGS: ReadonlySet<Outcome> = new Set<Outcome>([
  'ROTOR_E_QUOTA_BYTES_IN',
  'ROTOR_E_QUOTA_BYTES_OUT',
  'ROTOR_E_QUOTA_BYTES_TOTAL',
  'ROTOR_E_QUOTA_CONNECTION_TIME',
  'ROTOR_E_QUOTA_USAGE_TIME',
  'ROTOR_E_QUOTA_WALL_TIME',
  'ROTOR_E_QUOTA_AGE',
]);

/** How an exchange ended: answered, a lost reply sent again, or the Error code of its reply. */
export type Outcome = 'ok' | 'replay' | ErrorCode;

/**
 * How a login ended. The wire says only ROTOR_E_AUTH_FAILED for a bad password and a bad TOTP
 * code alike (a client must not learn which); the operator may.
 */
export const LOGIN_RESULTS = ['ok', 'password_failed', 'totp_failed', 'totp_required', 'rate_limited', 'error'] as const;
export type LoginResult = (typeof LOGIN_RESULTS)[number];

/**
 * What happens to tasks on this node: released by an exchange, claimed to run, ended and stored
 * (done, failed, timed_out), storing an outcome tried again, an outcome refused because the task
 * was claimed again since (superseded), lost after every try, or left unfinished at shutdown.
 */
export const TASK_EVENTS = ['released', 'claimed', 'done', 'failed', 'timed_out', 'finish_retried', 'superseded', 'outcome_lost', 'interrupted'] as const;
export type TaskEvent = (typeof TASK_EVENTS)[number];

/** The Store methods whose latency is measured (src/metrics/store.ts). */
export const STORE_OPERATIONS = [
  'createSession',
  'loadSession',
  'commitSession',
  'claimTasks',
  'finishTask',
  'loadTask',
  'putUser',
  'loadUser',
  'listUsers',
  'removeUser',
  'acceptTotpStep',
  'putPool',
  'loadPool',
  'listPools',
  'removePool',
  'loadSeats',
  'commitSeats',
  'loadRecord',
  'listRecords',
  'commitRecord',
  'createRecords',
  'removeRecord',
  'recordLoginFailure',
  'loginFailures',
  'clearLoginFailures',
  'purgeExpired',
  'ping',
] as const;
export type StoreOperation = (typeof STORE_OPERATIONS)[number];

const CARRIERS: readonly Carrier[] = ['tcp', 'tls', 'http', 'ws'];
/** Seconds: a memory store answers in microseconds, LMDB in tens of them, Redis in a fraction of a millisecond; a store call times out at 2 s. */
const STORE_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const LOOP_QUANTILES = [0.5, 0.9, 0.99] as const;
/** monitorEventLoopDelay's sampling interval, which each of its samples includes: an idle loop reads 10 ms. */
const LOOP_RESOLUTION_MS = 10;

type ConnectionCounts = Partial<Record<Carrier, number>>;

/**
 * Every metric rotor has, in one prom-client Registry of its own (never the global one: two
 * servers in one process keep apart). The layers that count get this object; counting on the
 * hot path is a plain increment (src/metrics/tally.ts).
 */
export class Metrics {
  readonly registry = new Registry();
  /** By operation, then outcome; outcomes other than ok get their series when first seen. */
  private readonly exchanges: Record<Operation, Map<Outcome, Tally>>;
  private readonly exchangeCounter: TallyCounter;
  private readonly replays: Tally;
  private readonly reuses: Tally;
  private readonly revokedBy: Record<'reuse' | 'logout' | 'deleted' | 'quota', Tally>;
  private readonly logins: Record<LoginResult, Tally>;
  private readonly tasks: Record<TaskEvent, Tally>;
  /** Latency of each store call, in seconds. */
  readonly store: Record<StoreOperation, HistogramSeries>;
  readonly storeErrors: Record<StoreOperation, Tally>;
  private readonly refusals: Counter;
  private readonly connectionSources: Array<() => ConnectionCounts> = [];
  private loopDelay: ReturnType<typeof monitorEventLoopDelay> | undefined;

  constructor() {
    const registry = this.registry;
    this.exchangeCounter = new TallyCounter(registry, 'rotor_exchanges_total', 'Frames answered, by operation and outcome (ok, replay, or the Error code of the reply).', ['operation', 'outcome']);
    this.exchanges = byName(OPERATIONS, (operation) => new Map([['ok', this.exchangeCounter.series({ operation, outcome: 'ok' })]]));
    this.replays = single(registry, 'rotor_replays_total', 'Lost replies sent again, byte for byte (token exchanges and TOTP logins), never redone.');
    this.reuses = single(registry, 'rotor_token_reuses_total', 'Rotated-away tokens presented again (each revoked its session).');
    const revocations = new TallyCounter(registry, 'rotor_revocations_total', 'Sessions revoked, by reason: reuse (a rotated-away token came back), logout, deleted (DELETE /rotor/token), quota (an access code\'s limit, §10).', ['reason']);
    this.revokedBy = byName(['reuse', 'logout', 'deleted', 'quota'] as const, (reason) => revocations.series({ reason }));
    const logins = new TallyCounter(registry, 'rotor_logins_total', 'Logins by result: ok, password_failed (unknown user or wrong password), totp_failed, totp_required, rate_limited, error.', ['result']);
    this.logins = byName(LOGIN_RESULTS, (result) => logins.series({ result }));
    const tasks = new TallyCounter(registry, 'rotor_tasks_total', 'Task events on this node, by state: released, claimed, done, failed, timed_out, finish_retried, superseded, outcome_lost, interrupted.', ['state']);
    this.tasks = byName(TASK_EVENTS, (state) => tasks.series({ state }));
    const latency = new TallyHistogram(registry, 'rotor_store_seconds', 'Latency of store calls, by Store method.', 'operation', STORE_BUCKETS);
    this.store = byName(STORE_OPERATIONS, (operation) => latency.series(operation));
    const errors = new TallyCounter(registry, 'rotor_store_errors_total', 'Store calls that rejected, by Store method.', ['operation']);
    this.storeErrors = byName(STORE_OPERATIONS, (operation) => errors.series({ operation }));
    this.refusals = new Counter({ name: 'rotor_connections_refused_total', help: 'Connections refused before a frame was read, by carrier and reason (the Error code).', labelNames: ['carrier', 'reason'], registers: [registry] });
    const sources = this.connectionSources;
    new Gauge({
      name: 'rotor_connections',
      help: 'Open connections by carrier (an HTTP connection upgraded to WebSocket counts as ws).',
      labelNames: ['carrier'],
      registers: [registry],
      collect() {
        const totals: Record<string, number> = Object.fromEntries(CARRIERS.map((carrier) => [carrier, 0]));
        for (const read of sources) for (const [carrier, count] of Object.entries(read())) totals[carrier] += count ?? 0;
        for (const carrier of CARRIERS) this.set({ carrier }, totals[carrier]);
      },
    });
    const metrics = this;
    new Gauge({
      name: 'rotor_event_loop_delay_seconds',
      help: 'How late the event loop ran timers since the previous scrape (quantile 1 = the most), sampled every 10 ms.',
      labelNames: ['quantile'],
      registers: [registry],
      collect() {
        const delay = metrics.loopDelay;
        if (!delay) return;
        const seconds = (ns: number) => (delay.count === 0 ? 0 : Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS) / 1000);
        for (const q of LOOP_QUANTILES) this.set({ quantile: String(q) }, seconds(delay.percentile(q * 100)));
        this.set({ quantile: '1' }, seconds(delay.max));
        delay.reset();
      },
    });
  }

  /** Count one answered frame, and what its outcome says: a replay, a reuse (a revocation), a logout or delete (a revocation). */
  exchange(operation: Operation, outcome: Outcome): void {
    const byOutcome = this.exchanges[operation];
    let tally = byOutcome.get(outcome);
    if (tally === undefined) {
      tally = this.exchangeCounter.series({ operation, outcome });
      byOutcome.set(outcome, tally);
    }
    tally.count++;
    if (outcome === 'ok') {
      if (operation === 'logout') this.revokedBy.logout.count++;
      else if (operation === 'delete') this.revokedBy.deleted.count++;
    } else if (outcome === 'replay') {
      this.replays.count++;
    } else if (outcome === 'ROTOR_E_TOKEN_REUSED') {
      this.reuses.count++;
      this.revokedBy.reuse.count++;
    } else if (QUOTA_ENDINGS.has(outcome)) {
      this.revokedBy.quota.count++;
    }
  }

  login(result: LoginResult): void {
    this.logins[result].count++;
  }

  task(event: TaskEvent, count = 1): void {
    this.tasks[event].count += count;
  }

  connectionRefused(carrier: Carrier, reason: ErrorCode): void {
    this.refusals.inc({ carrier, reason });
  }

  /** Report `read()`'s open connections (added up over every source) at each scrape. */
  countConnections(read: () => ConnectionCounts): void {
    this.connectionSources.push(read);
  }

  /** Sample the event loop's delay until the returned function is called. */
  watchEventLoop(): () => void {
    const delay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    delay.enable();
    this.loopDelay = delay;
    return () => {
      delay.disable();
      if (this.loopDelay === delay) this.loopDelay = undefined;
    };
  }

  /** The Prometheus text exposition of every metric. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function byName<K extends string, V>(names: readonly K[], make: (name: K) => V): Record<K, V> {
  return Object.fromEntries(names.map((name) => [name, make(name)])) as Record<K, V>;
}

function single(registry: Registry, name: string, help: string): Tally {
  return new TallyCounter(registry, name, help, []).series({});
}
