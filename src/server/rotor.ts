import { RotorError } from '../errors.ts';
import type { RotorConfig } from '../config/defaults.ts';
import { AccessLog, newRequestId, SecurityLog, type AccessEntry, type Logger, type SecurityEvent } from '../log/index.ts';
import { Metrics, type LoginResult } from '../metrics/index.ts';
import type { Origin } from '../net/origin.ts';
import { errorReply, Reply, type Frame, type RequestFrame } from '../wire/index.ts';
import type { KeyRing } from '../session/token.ts';
import { pooledRandom, type RandomSource } from '../session/random.ts';
import { sessionWith } from '../session/state.ts';
import type { Store } from '../store/types.ts';
import type { RotorApp } from './app.ts';
import { refused, type DispatchContext, type Note } from './context.ts';
import { exchange, type ExchangeOperation } from './exchange.ts';
import { KeyedSerializer } from './locks.ts';
import { application } from './operations/application.ts';
import { ownRoutes, type RouteTable } from './routes.ts';
import { TaskRunner } from './tasks.ts';
import { releaseSessionSeats } from '../seats/operations.ts';
import { foldConnection } from '../quotas/ledger.ts';
import type { HandOver } from '../handover/index.ts';
import { Seals } from '../seal/service.ts';

export { errorReply, Reply };
export { SERVER_NAME } from './context.ts';

export interface RotorDeps {
  config: RotorConfig;
  store: Store;
  app: RotorApp;
  keys: KeyRing;
  log: Logger;
  now?: (() => number) | undefined;
  random?: RandomSource | undefined;
  nodeId?: string | undefined;
  /** Where exchanges, logins and tasks are counted. Default: a Metrics of its own. */
  metrics?: Metrics | undefined;
  /** Hand-over to and from peers (spec §11, src/handover/): the same as useHandOver after construction. */
  handOver?: HandOver | undefined;
}

/**
 * The one dispatch path every carrier uses: a request frame in, the reply out. It routes the
 * frame (rotor's own paths by the table in routes.ts, everything else to the application inside
 * an exchange, exchange.ts), turns every failure into an error reply, and counts and logs what
 * each frame came to. It also runs the background work: tasks, the purge.
 */
export class Rotor {
  readonly config: RotorConfig;
  readonly store: Store;
  readonly log: Logger;
  readonly tasks: TaskRunner;
  readonly metrics: Metrics;
  /** Security events (failed logins, reuse, rate limiting) at warn, whatever the access log's settings. */
  readonly security: SecurityLog;
  private readonly access: AccessLog;
  private readonly now: () => number;
  private readonly context: DispatchContext;
  private readonly routes: RouteTable;
  private readonly application: (frame: RequestFrame, path: string, query: string) => ExchangeOperation;
  private purgeTimer: NodeJS.Timeout | undefined;
  private started = false;

  constructor(deps: RotorDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.log = deps.log;
    this.metrics = deps.metrics ?? new Metrics();
    this.security = new SecurityLog(deps.log);
    this.access = new AccessLog(deps.log, deps.config.observability);
    this.now = deps.now ?? Date.now;
    const random = deps.random ?? pooledRandom();
    const nodeId = deps.nodeId ?? random(6).toString('base64url');
    this.tasks = new TaskRunner(
      deps.store,
      deps.app.tasks,
      deps.config.tasks,
      deps.config.session.taskResultTtlMinutes * 60_000,
      deps.log,
      this.now,
      nodeId,
      { shutdownGraceMs: deps.config.connection.shutdownGraceMs, metrics: this.metrics },
    );
    this.context = {
      config: deps.config,
      store: deps.store,
      keys: deps.keys,
      log: deps.log,
      metrics: this.metrics,
      tasks: this.tasks,
      now: this.now,
      random,
      locks: new KeyedSerializer(),
      revokedRetentionMs: deps.config.session.revokedRetentionMinutes * 60_000,
      sessionEnded: async (ended, now) => {
        await releaseSessionSeats(this.context, ended.id, now);
        // The code's counters were committed with the session: a failure here leaves them in it, and the code's next login folds them.
        await foldConnection(this.store, ended, now, this.context.revokedRetentionMs).catch((err: unknown) => this.log.warn({ err, session: ended.id }, 'folding an ended connection into its access code failed'));
        await this.context.handOver?.sessionEnded(ended, now);
      },
      handOver: undefined,
      seals: new Seals(deps.keys, random, deps.store, deps.config.seal.rememberGenerations, deps.config.seal.registeredSeconds * 1000),
    };
    if (deps.handOver) this.useHandOver(deps.handOver);
    this.routes = ownRoutes(this.context);
    this.application = application(this.context, deps.app);
  }

  /**
   * Hand clients over to peers and take them from peers (spec §11): `handOver` is built from the
   * peers file and this server's hand-over keys (src/handover/). Once, before or after start();
   * its background pull and sweep run while the Rotor does.
   */
  useHandOver(handOver: HandOver): void {
    if (this.context.handOver) throw new Error('this Rotor has its hand-over already');
    handOver.attach(this.context);
    this.context.handOver = handOver;
    if (this.started) handOver.start();
  }

  /** Start the background work: the task runner, the purge sweep, retiring never-expiring sessions, the hand-over's pulls. */
  start(): void {
    this.started = true;
    this.context.handOver?.start();
    this.tasks.start();
    if (!this.config.session.allowNeverExpiring) {
      this.retireNeverExpiring().catch((err) => this.log.warn({ err }, 'retiring never-expiring sessions failed'));
    }
    if (!this.purgeTimer) {
      this.purgeTimer = setInterval(() => {
        this.store.purgeExpired(this.now()).catch((err) => this.log.warn({ err }, 'purge failed'));
        this.context.seals.sweep(this.now()).catch((err) => this.log.warn({ err }, 'forgetting used open nonces failed'));
      }, this.config.session.purgeIntervalMs);
      this.purgeTimer.unref();
    }
  }

  /**
   * With never-expiring tokens no longer allowed, the sessions made while they were: their tokens
   * are refused already (exchange), and here each gets an expiry of now, so the purge forgets them
   * instead of keeping them for good. One background walk of the store at start; returns how many.
   */
  async retireNeverExpiring(): Promise<number> {
    if (!this.store.listSessions) return 0;
    let retired = 0;
    let walked = 0;
    for await (const state of this.store.listSessions()) {
      // A metered session has no expiry while its code has none: its counters are the code's (spec §10).
      if (state.expiresAt === null && state.quota === null && (await this.store.commitSession(sessionWith(state, { expiresAt: this.now() }), state.rev, []))) retired++;
      // The walk shares the event loop with live traffic: let it breathe now and then.
      if (++walked % 1000 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    if (retired > 0) this.log.warn({ retired }, 'never-expiring sessions retired: session.allowNeverExpiring is off');
    return retired;
  }

  async stop(): Promise<void> {
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    this.purgeTimer = undefined;
    this.started = false;
    await this.context.handOver?.stop();
    await this.tasks.stop();
  }

  /**
   * Answer one frame. Never rejects: every failure becomes an error reply. `origin` (the carrier
   * tells it) goes into the log lines, and a login is throttled by its peer address.
   */
  async dispatch(frame: Frame, origin?: Origin): Promise<Reply> {
    const started = performance.now();
    const note: Note = { operation: 'unrouted', outcome: 'ok', session: undefined, user: undefined, passwordOk: false };
    let reply: Reply;
    try {
      reply = await this.route(frame, note, origin);
    } catch (err) {
      if (!(err instanceof RotorError)) this.log.error({ err }, 'internal error');
      reply = err instanceof RotorError ? refused(note, err.code, err.headers.length === 0 ? undefined : err.headers.map(([name, value]) => [name, value])) : refused(note, 'ROTOR_E_INTERNAL');
    }
    this.observe(note, reply, origin, started);
    return reply;
  }

  /** Count an answered frame; write its access line (when the sample picks it) and its security event, if it is one. */
  private observe(note: Note, reply: Reply, origin: Origin | undefined, started: number): void {
    this.metrics.exchange(note.operation, note.outcome);
    const login = note.operation === 'login' ? loginResult(note) : undefined;
    if (login !== undefined) this.metrics.login(login);
    const event = securityEvent(note, login);
    const logged = this.access.picks();
    if (!logged && event === undefined) return;
    const entry: AccessEntry = {
      reqId: newRequestId(),
      carrier: origin?.carrier,
      peer: origin?.peer,
      op: note.operation,
      status: reply.status,
      code: note.outcome === 'ok' || note.outcome === 'replay' ? undefined : note.outcome,
      replay: note.outcome === 'replay',
      durationUs: Math.round((performance.now() - started) * 1000),
      session: note.session,
      user: note.user,
    };
    if (logged) this.access.write(entry);
    if (event !== undefined) this.security.report(event, { reqId: entry.reqId, carrier: entry.carrier, peer: entry.peer, user: entry.user, session: entry.session });
  }

  private route(frame: Frame, note: Note, origin: Origin | undefined): Promise<Reply> | Reply {
    if (frame.kind !== 'request') return refused(note, 'ROTOR_E_BAD_START_LINE');
    const queryAt = frame.path.indexOf('?');
    const path = queryAt === -1 ? frame.path : frame.path.slice(0, queryAt);
    if (!path.startsWith('/rotor/')) {
      note.operation = 'app';
      const query = queryAt === -1 ? '' : frame.path.slice(queryAt + 1);
      return exchange(this.context, frame, this.application(frame, path, query), note, origin);
    }
    const verbs = this.routes.lookup(path);
    if (!verbs) return refused(note, 'ROTOR_E_NOT_FOUND');
    const route = verbs[frame.verb];
    if (!route) return refused(note, 'ROTOR_E_METHOD_NOT_ALLOWED', [['Allow', Object.keys(verbs).join(', ')]]);
    note.operation = route.operation;
    return route.run(frame, note, path, origin);
  }
}

function loginResult(note: Note): LoginResult {
  switch (note.outcome) {
    case 'ok':
    case 'replay':
      return 'ok';
    case 'ROTOR_E_AUTH_FAILED':
      return note.passwordOk ? 'totp_failed' : 'password_failed';
    case 'ROTOR_E_TOTP_REQUIRED':
      return 'totp_required';
    case 'ROTOR_E_RATE_LIMITED':
      return 'rate_limited';
    default:
      return 'error';
  }
}

/** The security event an answered frame is, if any: logged whatever the access log says. */
function securityEvent(note: Note, login: LoginResult | undefined): SecurityEvent | undefined {
  if (note.outcome === 'ROTOR_E_TOKEN_REUSED') return 'token_reused';
  if (note.outcome === 'ROTOR_E_CLIENT_MISMATCH') return 'client_mismatch';
  if (login === 'password_failed') return 'login_failed';
  if (login === 'totp_failed') return 'totp_failed';
  if (login === 'rate_limited') return 'rate_limited';
  return undefined;
}
