import { ERRORS, RotorError, reasonFor, type ErrorCode } from '../errors.ts';
import type { RotorConfig } from '../config/defaults.ts';
import { AccessLog, newRequestId, SecurityLog, type AccessEntry, type Logger, type SecurityEvent } from '../log/index.ts';
import { Metrics, type LoginResult, type Operation as OperationName, type Outcome as ExchangeOutcome } from '../metrics/index.ts';
import type { Origin } from '../transport/admission.ts';
import { errorReply, getHeader, Reply, serializeFrame, type Header, type RequestFrame, type Frame, type ResponseFrame } from '../wire/index.ts';

export { errorReply, Reply };
import { admit, createSession, releasedTasks, revoke, rotate } from '../session/machine.ts';
import { claimsExpireAt, deriveId, hashToken, KeyRing, mintToken, verifyToken } from '../session/token.ts';
import { pooledRandom, type RandomSource } from '../session/random.ts';
import { replyAtRest, replyFromRest } from '../session/replay.ts';
import type { RevokeReason, SessionState, TaskSpec } from '../session/types.ts';
import type { Store, TaskRecord, UserRecord } from '../store/types.ts';
import { Router, type AppReply, type AppRequest, type RotorApp } from './app.ts';
import { dummyHash, HashLimiter, matchTotp, verifyPassword } from './auth.ts';
import { KeyedSerializer } from './locks.ts';
import { TaskRunner } from './tasks.ts';

export const SERVER_NAME = 'rotor/0.1.0';

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
}

/** What an admitted token exchange does once the machine said proceed. */
type Operation =
  | { kind: 'ack' }
  | { kind: 'end'; reason: RevokeReason; status: number }
  | { kind: 'resume' }
  | { kind: 'meta'; merge: Record<string, unknown> }
  | { kind: 'task'; taskId: string }
  | { kind: 'app'; frame: RequestFrame; path: string; query: string };

/** A processed exchange before its token is attached. */
interface Outcome {
  status: number;
  headers: Header[];
  body?: Buffer;
  error?: ErrorCode;
  tasks: TaskSpec[];
  meta: Readonly<Record<string, unknown>>;
}

/**
 * What one frame came to, noted as the dispatcher decides it; the metrics and the logs read it
 * once the reply is ready.
 */
interface Note {
  operation: OperationName;
  /** Set where the reply is decided: ok, replay, or the reply's Error code. */
  outcome: ExchangeOutcome;
  session: string | undefined;
  user: string | undefined;
  /** A login got past its password: an AUTH_FAILED after that was its TOTP code. */
  passwordOk: boolean;
}

interface OwnOperation {
  operation: OperationName;
  run: (frame: RequestFrame, note: Note, path: string) => Promise<Reply> | Reply;
}
type OwnRoute = Record<string, OwnOperation>;
const own = (operation: OperationName, run: OwnOperation['run']): OwnOperation => ({ operation, run });
const TASKS_PREFIX = '/rotor/tasks/';
/** What a task id may look like: rotor makes 16 base64url characters; anything far off is a bad request, not a store lookup. */
const TASK_ID = /^[A-Za-z0-9_-]{1,64}$/;
const RESERVED_HEADERS = new Set(['token', 'error', 'task', 'wait-for', 'bin-length', 'server', 'content-type']);
const JSON_TYPE = 'application/json';

/**
 * The one dispatch path every carrier uses: a request frame in, the reply bytes out. It drives
 * the pure session machine against the store, mints tokens, runs application handlers, and
 * hands released tasks to the task runner.
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
  private readonly keys: KeyRing;
  private readonly router: Router;
  private readonly now: () => number;
  private readonly random: RandomSource;
  private readonly locks = new KeyedSerializer();
  private readonly hashing: HashLimiter;
  private readonly dummyHash: string;
  /** How long a revoked session is remembered (its tokens get SESSION_REVOKED, not SESSION_UNKNOWN). */
  private readonly revokedRetentionMs: number;
  private readonly taskNames: Set<string>;
  private purgeTimer: NodeJS.Timeout | undefined;

  constructor(deps: RotorDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.log = deps.log;
    this.metrics = deps.metrics ?? new Metrics();
    this.security = new SecurityLog(deps.log);
    this.access = new AccessLog(deps.log, deps.config.observability);
    this.keys = deps.keys;
    this.router = new Router(deps.app.routes);
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? pooledRandom();
    this.hashing = new HashLimiter(deps.config.auth);
    this.dummyHash = dummyHash(deps.config.auth);
    this.revokedRetentionMs = deps.config.session.revokedRetentionMinutes * 60_000;
    this.taskNames = new Set(Object.keys(deps.app.tasks));
    const nodeId = deps.nodeId ?? this.random(6).toString('base64url');
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
  }

  /** Start the background work: the task runner, the purge sweep, retiring never-expiring sessions. */
  start(): void {
    this.tasks.start();
    if (!this.config.session.allowNeverExpiring) {
      this.retireNeverExpiring().catch((err) => this.log.warn({ err }, 'retiring never-expiring sessions failed'));
    }
    if (!this.purgeTimer) {
      this.purgeTimer = setInterval(() => {
        this.store.purgeExpired(this.now()).catch((err) => this.log.warn({ err }, 'purge failed'));
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
      if (state.expiresAt === null && (await this.store.commitSession({ ...state, expiresAt: this.now() }, state.rev, []))) retired++;
      // The walk shares the event loop with live traffic: let it breathe now and then.
      if (++walked % 1000 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    if (retired > 0) this.log.warn({ retired }, 'never-expiring sessions retired: session.allowNeverExpiring is off');
    return retired;
  }

  async stop(): Promise<void> {
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    this.purgeTimer = undefined;
    await this.tasks.stop();
  }

  /**
   * Answer one frame. Never rejects: every failure becomes an error reply. `origin` (the carrier
   * tells it) goes into the log lines only.
   */
  async dispatch(frame: Frame, origin?: Origin): Promise<Reply> {
    const started = performance.now();
    const note: Note = { operation: 'unrouted', outcome: 'ok', session: undefined, user: undefined, passwordOk: false };
    let reply: Reply;
    try {
      reply = await this.route(frame, note);
    } catch (err) {
      if (!(err instanceof RotorError)) this.log.error({ err }, 'internal error');
      reply = refused(note, err instanceof RotorError ? err.code : 'ROTOR_E_INTERNAL');
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

  private route(frame: Frame, note: Note): Promise<Reply> | Reply {
    if (frame.kind !== 'request') return refused(note, 'ROTOR_E_BAD_START_LINE');
    const queryAt = frame.path.indexOf('?');
    const path = queryAt === -1 ? frame.path : frame.path.slice(0, queryAt);
    const query = queryAt === -1 ? '' : frame.path.slice(queryAt + 1);
    if (!path.startsWith('/rotor/')) {
      note.operation = 'app';
      return this.exchange(frame, { kind: 'app', frame, path, query }, note);
    }
    const verbs = this.ownRoutes.get(path) ?? (path.startsWith(TASKS_PREFIX) && path.length > TASKS_PREFIX.length ? this.taskRoute : undefined);
    if (!verbs) return refused(note, 'ROTOR_E_NOT_FOUND');
    const operation = verbs[frame.verb];
    if (!operation) return refused(note, 'ROTOR_E_METHOD_NOT_ALLOWED', [['Allow', Object.keys(verbs).join(', ')]]);
    note.operation = operation.operation;
    return operation.run(frame, note, path);
  }

  /** rotor's own paths, verb by verb, each with the operation it counts as; a known path asked with another verb is 405 with `Allow`. */
  private readonly ownRoutes = new Map<string, OwnRoute>([
    ['/rotor/ping', { GET: own('ping', () => plainReply(200, [['Server', SERVER_NAME]])) }],
    ['/rotor/login', { POST: own('login', (frame, note) => this.login(frame, note)) }],
    [
      '/rotor/token',
      {
        POST: own('token', (frame, note) => this.createToken(frame, note)),
        PUT: own('meta', (frame, note) => this.exchange(frame, { kind: 'meta', merge: parseMetaBody(frame, this.config.session.maxMetaBytes) }, note)),
        DELETE: own('delete', (frame, note) => this.exchange(frame, { kind: 'end', reason: 'deleted', status: 202 }, note)),
      },
    ],
    ['/rotor/resume', { POST: own('resume', (frame, note) => this.exchange(frame, { kind: 'resume' }, note)) }],
    ['/rotor/ack', { POST: own('ack', (frame, note) => this.exchange(frame, { kind: 'ack' }, note)) }],
    ['/rotor/logout', { POST: own('logout', (frame, note) => this.exchange(frame, { kind: 'end', reason: 'logout', status: 200 }, note)) }],
  ]);

  private readonly taskRoute: OwnRoute = {
    GET: own('task', (frame, note, path) => {
      const taskId = path.slice(TASKS_PREFIX.length);
      if (!TASK_ID.test(taskId)) throw new RotorError('ROTOR_E_BAD_REQUEST', 'not a task id');
      return this.exchange(frame, { kind: 'task', taskId }, note);
    }),
  };

  // ---- logins: new sessions ------------------------------------------------------------------

  private async login(frame: RequestFrame, note: Note): Promise<Reply> {
    const user = getHeader(frame, 'User');
    const password = getHeader(frame, 'Password');
    if (!user || password === undefined) throw new RotorError('ROTOR_E_BAD_REQUEST', 'login needs User and Password');
    if (Buffer.byteLength(user) > this.config.auth.maxUserNameBytes) throw new RotorError('ROTOR_E_BAD_REQUEST', 'user name too long');
    note.user = user;
    const meta = parseMetaBody(frame, this.config.session.maxMetaBytes);
    const record = await this.store.loadUser(user);
    const passwordOk = await this.hashing.run(() => verifyPassword(password, record?.passwordHash ?? this.dummyHash));
    if (!record || !passwordOk) throw new RotorError('ROTOR_E_AUTH_FAILED');
    note.passwordOk = true;
    if (record.totpSecret) {
      const code = getHeader(frame, 'TOTP');
      if (!code) throw new RotorError('ROTOR_E_TOTP_REQUIRED');
      const step = matchTotp(record.totpSecret, code, this.now(), this.config.auth.totpWindow);
      if (step === undefined) throw new RotorError('ROTOR_E_AUTH_FAILED');
      return this.totpLogin(record, step, meta, note);
    }
    const { reply, state } = await this.openSession(user, meta);
    note.session = state.id;
    return reply;
  }

  /**
   * A TOTP code works once, so a login whose reply was lost could not be sent again. Its session
   * id is therefore derived from (key, user, step): the same login sent again finds the session
   * its code opened and, while that session's first token is unused, gets the identical reply.
   * The session is stored before the step is burned, so a store error costs the user nothing.
   */
  private totpLogin(record: UserRecord, step: number, meta: Record<string, unknown>, note: Note): Promise<Reply> {
    const id = deriveId(this.keys, `totp-login\0${record.name}\0${step}`);
    note.session = id;
    // Burn the step. Refused when it is already burned: by a newer step (the code is spent), or by
    // this very step — which only a login deriving this same session id can have done.
    const burn = async (): Promise<boolean> =>
      (await this.store.acceptTotpStep(record.name, step)) || (await this.store.loadUser(record.name))?.lastTotpStep === step;
    const again = async (earlier: SessionState): Promise<Reply> => {
      // Only a session nobody has used yet is handed out again, and only for the step it was opened with.
      if (earlier.gen !== 1 || earlier.acked || earlier.revoked || !earlier.prev) throw new RotorError('ROTOR_E_AUTH_FAILED');
      if (record.lastTotpStep !== step && !(await burn())) throw new RotorError('ROTOR_E_AUTH_FAILED');
      const bytes = replyFromRest(this.keys, earlier.prev.reply, earlier.tokenHash);
      if (!bytes) throw new RotorError('ROTOR_E_AUTH_FAILED');
      note.outcome = 'replay';
      this.log.warn({ event: 'totp_login_again', user: record.name, session: id }, 'a TOTP login was sent again: the same reply');
      return Reply.fromBytes(bytes);
    };
    return this.locks.run(id, async () => {
      const earlier = await this.store.loadSession(id);
      if (earlier) return again(earlier);
      let opened: { reply: Reply; state: SessionState };
      try {
        opened = await this.openSession(record.name, meta, id);
      } catch (err) {
        // Another node stored the session first (the same login sent to two nodes at once).
        const raced = await this.store.loadSession(id);
        if (!raced) throw err;
        return again(raced);
      }
      const { reply, state } = opened;
      if (!(await burn())) {
        // A newer step was used meanwhile: this code is spent, and its session must never work.
        const now = this.now();
        await this.store.commitSession(revoke(state, 'deleted', now, now + this.revokedRetentionMs).state, 0, []);
        throw new RotorError('ROTOR_E_AUTH_FAILED');
      }
      return reply;
    });
  }

  private createToken(frame: RequestFrame, note: Note): Promise<Reply> {
    if (!this.config.session.openTokenCreate) throw new RotorError('ROTOR_E_FORBIDDEN', 'token creation without login is disabled');
    return this.openSession('', parseMetaBody(frame, this.config.session.maxMetaBytes)).then(({ reply, state }) => {
      note.session = state.id;
      return reply;
    });
  }

  /** A new session and its first token. With `id` (a TOTP login), the reply is also kept for a retry. */
  private async openSession(user: string, meta: Record<string, unknown>, id?: string): Promise<{ reply: Reply; state: SessionState }> {
    const now = this.now();
    const sessionId = id ?? this.random(16).toString('base64url');
    const { token, expiresAt } = this.mint(sessionId, 1, user, now);
    const headers: Header[] = [['Token', token]];
    const reply = user === '' ? plainReply(200, [...headers, ['Content-Type', JSON_TYPE]], Buffer.from(JSON.stringify(meta))) : plainReply(200, headers);
    const loginReply = id === undefined ? undefined : replyAtRest(reply.bytes);
    const state = createSession({ id: sessionId, user, tokenHash: hashToken(token), expiresAt, meta, now, loginReply });
    await this.store.createSession(state);
    return { reply, state };
  }

  private mint(sessionId: string, generation: number, user: string, now: number): { token: string; expiresAt: number | null } {
    const issued = Math.floor(now / 1000);
    const ttlMinutes = this.config.session.tokenTtlMinutes;
    const token = mintToken(this.keys, { session: sessionId, generation, issued, ttlMinutes, user }, this.random);
    return { token, expiresAt: claimsExpireAt({ issued, ttlMinutes }) };
  }

  // ---- token exchanges -----------------------------------------------------------------------

  private exchange(frame: RequestFrame, op: Operation, note: Note): Promise<Reply> {
    const token = getHeader(frame, 'Token');
    if (!token) throw new RotorError('ROTOR_E_TOKEN_MISSING');
    const claims = verifyToken(this.keys, token);
    const expiresAt = claimsExpireAt(claims);
    // A token made never-expiring while the operator allowed it dies when they stop allowing it.
    if (expiresAt === null ? !this.config.session.allowNeverExpiring : this.now() >= expiresAt) throw new RotorError('ROTOR_E_TOKEN_EXPIRED');
    const presented = { gen: claims.generation, hash: hashToken(token) };
    note.session = claims.session;
    // No await before the lock: frames of one session queue in arrival order.
    return this.locks.run(claims.session, () => this.exchangeLocked(claims.session, presented, op, note));
  }

  private async exchangeLocked(sessionId: string, presented: { gen: number; hash: string }, op: Operation, note: Note): Promise<Reply> {
    for (let attempt = 0; attempt < this.config.session.maxCommitRetries; attempt++) {
      const state = await this.store.loadSession(sessionId);
      if (!state) return refused(note, 'ROTOR_E_SESSION_UNKNOWN');
      // A session opened without a login (note 004's POST /token) has no user.
      note.user = state.user || undefined;
      const now = this.now();
      const admission = admit(state, presented, now, now + this.revokedRetentionMs, op.kind === 'end');
      if (admission.verdict === 'replay') {
        // Undefined: the key that signed the next token was retired since (that token is dead
        // anyway), or the kept reply is not the one this session's newest token came in.
        const bytes = replyFromRest(this.keys, admission.reply, state.tokenHash);
        if (!bytes) {
          this.log.warn({ session: sessionId }, 'kept reply cannot be replayed: its key is retired or it does not hold the newest token');
          return refused(note, 'ROTOR_E_TOKEN_INVALID');
        }
        note.outcome = 'replay';
        return Reply.fromBytes(bytes);
      }
      if (admission.verdict === 'reject') {
        if (admission.state && !(await this.store.commitSession(admission.state, state.rev, []))) continue;
        return refused(note, admission.code);
      }
      const released = this.taskRecords(admission.state, releasedTasks(admission.effects), now);
      const result = await this.perform(state, admission.state, op, released, now, note);
      if (!result) continue;
      if (released.length > 0) {
        this.metrics.task('released', released.length);
        this.tasks.notify();
      }
      return result;
    }
    return refused(note, 'ROTOR_E_CONFLICT');
  }

  /** Carry out an admitted operation; undefined when the session changed under it (retry). */
  private async perform(
    loaded: SessionState,
    admitted: SessionState,
    op: Operation,
    released: TaskRecord[],
    now: number,
    note: Note,
  ): Promise<Reply | undefined> {
    if (op.kind === 'ack') {
      if (admitted !== loaded && !(await this.store.commitSession(admitted, loaded.rev, released))) return undefined;
      return plainReply(200, []);
    }
    if (op.kind === 'end') {
      const ended = revoke(admitted, op.reason, now, now + this.revokedRetentionMs);
      if (!(await this.store.commitSession(ended.state, loaded.rev, released))) return undefined;
      return plainReply(op.status, []);
    }
    const outcome = await this.produce(admitted, op, released);
    const { token, expiresAt } = this.mint(admitted.id, admitted.gen + 1, admitted.user, now);
    const headers: Header[] = [['Token', token], ...outcome.headers];
    if (outcome.error) headers.push(['Error', outcome.error]);
    const frame: ResponseFrame = { kind: 'response', status: outcome.status, reason: reasonFor(outcome.status), headers, body: outcome.body };
    const bytes = serializeFrame(frame, this.config.wire);
    const rotated = rotate(admitted, {
      nextHash: hashToken(token),
      nextExpiresAt: expiresAt,
      reply: replyAtRest(bytes),
      tasks: outcome.tasks,
      meta: outcome.meta,
    });
    if (!(await this.store.commitSession(rotated, loaded.rev, released))) return undefined;
    if (outcome.error) note.outcome = outcome.error;
    return Reply.serialized(frame, bytes);
  }

  private async produce(state: SessionState, op: Operation, released: readonly TaskRecord[]): Promise<Outcome> {
    const base = { tasks: [], meta: state.meta };
    switch (op.kind) {
      case 'resume':
        return { ...base, status: 200, headers: [] };
      case 'meta': {
        const meta = { ...state.meta, ...op.merge };
        if (Buffer.byteLength(JSON.stringify(meta)) > this.config.session.maxMetaBytes) {
          return { ...base, ...errorOutcome('ROTOR_E_BAD_REQUEST') };
        }
        return { tasks: [], meta, status: 200, headers: [['Content-Type', JSON_TYPE]], body: Buffer.from(JSON.stringify(meta)) };
      }
      case 'task':
        return { ...base, ...(await this.taskStatus(state, op.taskId, released)) };
      case 'app':
        return this.runHandler(state, op);
      default:
        throw new Error(`unexpected operation ${op.kind}`);
    }
  }

  private async taskStatus(state: SessionState, taskId: string, released: readonly TaskRecord[]): Promise<Omit<Outcome, 'tasks' | 'meta'>> {
    const task = released.find((t) => t.id === taskId) ?? (await this.store.loadTask(taskId));
    if (!task || task.sessionId !== state.id) return errorOutcome('ROTOR_E_TASK_UNKNOWN');
    if (task.status === 'done') {
      const headers: Header[] = task.contentType ? [['Content-Type', task.contentType]] : [];
      return { status: 200, headers, body: task.result ?? Buffer.alloc(0) };
    }
    if (task.status === 'failed' || task.status === 'timed_out') {
      const code = task.status === 'failed' ? 'ROTOR_E_TASK_FAILED' : 'ROTOR_E_TASK_TIMED_OUT';
      return { ...errorOutcome(code), headers: [['Content-Type', 'text/plain; charset=utf-8']], body: Buffer.from(task.error ?? '') };
    }
    return { status: 202, headers: [['Task', task.id], ['Wait-for', String(this.config.session.defaultWaitForSeconds)]] };
  }

  private async runHandler(state: SessionState, op: Extract<Operation, { kind: 'app' }>): Promise<Outcome> {
    const failed = (code: ErrorCode): Outcome => ({ ...errorOutcome(code), tasks: [], meta: state.meta });
    const match = this.router.match(op.frame.verb, op.path);
    if ('error' in match) {
      const outcome = failed(match.error);
      if (match.error === 'ROTOR_E_METHOD_NOT_ALLOWED') outcome.headers.push(['Allow', match.allow.join(', ')]);
      return outcome;
    }
    const frame = op.frame;
    const request: AppRequest = {
      verb: frame.verb,
      path: op.path,
      query: op.query,
      headers: frame.headers,
      header: (name) => getHeader(frame, name),
      body: frame.body,
      user: state.user,
      sessionId: state.id,
      meta: state.meta,
    };
    let reply: AppReply;
    try {
      reply = await match.handler(request);
    } catch (err) {
      if (err instanceof RotorError && !err.fatal) return failed(err.code);
      this.log.error({ err, path: op.path }, 'handler failed');
      return failed('ROTOR_E_HANDLER_FAILED');
    }
    try {
      return this.toOutcome(state, frame.verb, reply);
    } catch (err) {
      this.log.error({ err, path: op.path }, 'handler returned a bad reply');
      return failed('ROTOR_E_HANDLER_FAILED');
    }
  }

  /** Check an application's reply and turn it into an outcome; throws on a handler bug. */
  private toOutcome(state: SessionState, verb: string, reply: AppReply): Outcome {
    const deferrals = reply.defer === undefined ? [] : Array.isArray(reply.defer) ? reply.defer : [reply.defer];
    if (deferrals.length > 0 && verb === 'GET') throw new Error('a GET may not defer work');
    if (deferrals.length > this.config.session.maxTasksPerExchange) throw new Error('too many deferred tasks');
    const tasks: TaskSpec[] = deferrals.map((d) => {
      if (!this.taskNames.has(d.task)) throw new Error(`no task handler named ${d.task}`);
      return { id: this.random(12).toString('base64url'), name: d.task, payload: d.payload ?? null };
    });
    const status = reply.status ?? (tasks.length > 0 ? 202 : 200);
    if (!Number.isInteger(status) || status < 200 || status > 599) throw new Error(`bad status ${status}`);
    const headers: Header[] = [];
    if (tasks.length > 0) {
      const wait = Math.max(...deferrals.map((d) => d.waitForSeconds ?? this.config.session.defaultWaitForSeconds));
      headers.push(['Task', tasks.map((t) => t.id).join(',')], ['Wait-for', String(wait)]);
    }
    if (reply.contentType) headers.push(['Content-Type', reply.contentType]);
    for (const [name, value] of Object.entries(reply.headers ?? {})) {
      if (RESERVED_HEADERS.has(name.toLowerCase())) throw new Error(`a handler may not set ${name}`);
      headers.push([name, value]);
    }
    const meta = reply.meta ? { ...state.meta, ...reply.meta } : state.meta;
    if (reply.meta && Buffer.byteLength(JSON.stringify(meta)) > this.config.session.maxMetaBytes) throw new Error('metadata too large');
    const body = reply.body === undefined ? undefined : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
    if (body && body.length > this.config.wire.maxBodyBytes) throw new Error('reply body over the body limit');
    return { status, headers, body, tasks, meta };
  }

  private taskRecords(state: SessionState, specs: readonly TaskSpec[], now: number): TaskRecord[] {
    return specs.map((spec) => ({ ...spec, sessionId: state.id, user: state.user, status: 'released', releasedAt: now, expiresAt: null }));
  }
}

/** An error reply, noted as the frame's outcome. */
function refused(note: Note, code: ErrorCode, extra?: Header[]): Reply {
  note.outcome = code;
  return errorReply(code, extra);
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
  if (login === 'password_failed') return 'login_failed';
  if (login === 'totp_failed') return 'totp_failed';
  if (login === 'rate_limited') return 'rate_limited';
  return undefined;
}

function plainReply(status: number, headers: Header[], body?: Buffer): Reply {
  return Reply.of(status, headers, body);
}

function errorOutcome(code: ErrorCode): { status: number; headers: Header[]; error: ErrorCode } {
  return { status: ERRORS[code].status, headers: [], error: code };
}

/** A request body of JSON metadata: absent or empty means {}, anything but an object is refused. */
function parseMetaBody(frame: RequestFrame, maxBytes: number): Record<string, unknown> {
  const body = frame.body;
  if (!body || body.length === 0) return {};
  const type = getHeader(frame, 'Content-Type');
  if (type !== undefined && !type.toLowerCase().startsWith(JSON_TYPE)) {
    throw new RotorError('ROTOR_E_BAD_REQUEST', 'metadata must be application/json');
  }
  if (body.length > maxBytes) throw new RotorError('ROTOR_E_BAD_REQUEST', 'metadata too large');
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new RotorError('ROTOR_E_BAD_REQUEST', 'metadata is not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new RotorError('ROTOR_E_BAD_REQUEST', 'metadata must be a JSON object');
  }
  return value as Record<string, unknown>;
}
