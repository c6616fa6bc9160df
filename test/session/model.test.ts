/**
 * Model-based test of the rotation rules: fast-check generates histories of client actions
 * (logins, requests whose replies get lost, retries, bare ACKs, stale tokens, duplicates,
 * concurrent requests, clock jumps, restarts) and runs each against a simple model and against
 * the real driver (`Rotor.dispatch` on a MemoryStore), comparing every reply and, after every
 * step, what ran and what the store holds.
 *
 * Runs: ROTOR_MODEL_RUNS, else 2000 with CI=true, else 200. FC_SEED / FC_PATH replay a failure.
 */
import t from 'tap';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { ERRORS, reasonFor, type ErrorCode } from '../../src/errors.ts';
import { silentLogger } from '../../src/log/index.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing, verifyToken } from '../../src/session/token.ts';
import type { RevokeReason } from '../../src/session/types.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { UserRecord } from '../../src/store/types.ts';
import { replyFromRest } from '../../src/session/replay.ts';
import { getHeader, type Header, type RequestFrame } from '../../src/wire/index.ts';
import { T0, TTL_MINUTES, TTL_MS, errorCode, fcRuns, parseReply, request, testConfig, tokenExpiry } from '../helpers/session.ts';

const config = testConfig();
const log = silentLogger();
const PASSWORD = 'correct horse';
const USER_NAMES = ['ann', 'bob'] as const;
const MAX_SESSIONS = 5;

/** Exchanges that rotate the token once admitted, and those that do not. */
const ROTATING = ['read', 'work', 'resume', 'task'] as const;
const ENDING = ['logout', 'delete'] as const;
type Action = (typeof ROTATING)[number] | 'ack' | (typeof ENDING)[number];

function frameFor(action: Action, token: string, taskId: string): RequestFrame {
  const headers: Header[] = [['Token', token]];
  switch (action) {
    case 'read':
      return request('GET', '/read', headers);
    case 'work':
      return request('POST', '/work', headers);
    case 'resume':
      return request('POST', '/rotor/resume', headers);
    case 'task':
      return request('GET', `/rotor/tasks/${taskId}`, headers);
    case 'ack':
      return request('POST', '/rotor/ack', headers);
    case 'logout':
      return request('POST', '/rotor/logout', headers);
    case 'delete':
      return request('DELETE', '/rotor/token', headers);
  }
}

// ---- the model ---------------------------------------------------------------------------------

interface Issued {
  readonly token: string;
  readonly gen: number;
  readonly expiresAt: number;
}

/** held: waiting for the ack; queued: released, not yet seen to run; done: ran once. */
interface ModelTask {
  readonly id: string;
  readonly session: ModelSession;
  state: 'held' | 'queued' | 'done' | 'cancelled';
  readonly result: string;
  releasedAt?: number;
}

interface ModelSession {
  readonly label: string;
  readonly id: string;
  readonly user: string;
  /** Every token the server issued to this session (lost ones too); index = generation - 1. */
  readonly tokens: Issued[];
  /** The newest generation the client holds (one less than the server's after a lost reply). */
  known: number;
  acked: boolean;
  /** The bytes that carried the newest token, until it is acked. */
  prevReply: Buffer | null;
  held: ModelTask[];
  revoked: RevokeReason | null;
  /** App handler runs: every processed read or work, never a replay. */
  handled: number;
  /** Ids of this session's tasks the client saw in a reply. */
  readonly taskIds: string[];
}

interface Model {
  now: number;
  readonly sessions: ModelSession[];
  readonly tasks: Map<string, ModelTask>;
}

type Verdict = { kind: 'proceed' } | { kind: 'replay' } | { kind: 'error'; code: ErrorCode };

/** What presenting generation `gen` of `s` at `now` must do: the whole rule table. */
function classify(s: ModelSession, gen: number, now: number, ending = false): Verdict {
  const newest = s.tokens.length;
  if (now >= s.tokens[gen - 1].expiresAt) return { kind: 'error', code: 'ROTOR_E_TOKEN_EXPIRED' };
  if (s.revoked) return { kind: 'error', code: 'ROTOR_E_SESSION_REVOKED' };
  if (gen === newest) return { kind: 'proceed' };
  // An end with the previous token ends the session (cancelling the held work) rather than replaying.
  if (gen === newest - 1 && !s.acked) return ending ? { kind: 'proceed' } : { kind: 'replay' };
  return { kind: 'error', code: 'ROTOR_E_TOKEN_REUSED' };
}

function revokeModel(s: ModelSession, reason: RevokeReason): void {
  s.revoked = reason;
  for (const task of s.held) task.state = 'cancelled';
  s.held = [];
  s.prevReply = null;
}

/** The client now holds the newest token, and the task id its reply carried. */
function learn(s: ModelSession): void {
  s.known = s.tokens.length;
  for (const task of s.held) if (!s.taskIds.includes(task.id)) s.taskIds.push(task.id);
}

/** How often each path was taken, summed over all histories: the generator must reach them all. */
const coverage: Record<string, number> = {};
const seen = (what: string): void => {
  coverage[what] = (coverage[what] ?? 0) + 1;
};

// ---- the real thing ------------------------------------------------------------------------------

interface TaskRun {
  taskId: string;
  at: number;
  /** The client had sent the token of the reply that deferred the task. */
  clientAcked: boolean;
  /** The store says that token was acknowledged. */
  storeAcked: boolean;
  /** The rotor instance that ran it had already been stopped. */
  afterStop: boolean;
}

let users: UserRecord[] | undefined;

class World {
  readonly store = new MemoryStore();
  readonly keys: KeyRing;
  readonly rotors: Rotor[] = [];
  private readonly stopped = new Set<number>();
  readonly handled = new Map<string, number>();
  readonly runs: TaskRun[] = [];
  /** Every token any request carried. */
  readonly presented = new Set<string>();
  /** Task id → the token of the reply that deferred it. */
  readonly deferredBy = new Map<string, string>();

  constructor(
    private readonly seed: number,
    readonly now: () => number,
  ) {
    this.keys = KeyRing.generate(seededRandom(seed));
  }

  get rotor(): Rotor {
    return this.rotors[this.rotors.length - 1];
  }

  async boot(): Promise<void> {
    users ??= await Promise.all(
      USER_NAMES.map(async (name, i) => ({ name, passwordHash: await hashPassword(PASSWORD, config.auth, seededRandom(i + 1)), createdAt: T0 })),
    );
    for (const user of users) await this.store.putUser(user);
    this.startRotor();
  }

  /** A new node on the same store: nothing but the store and the keys carries over. */
  async restart(): Promise<void> {
    await this.rotor.stop();
    this.stopped.add(this.rotors.length - 1);
    this.startRotor();
  }

  private startRotor(): void {
    const instance = this.rotors.length;
    const rotor = new Rotor({
      config,
      store: this.store,
      app: this.app(instance),
      keys: this.keys,
      log,
      now: this.now,
      random: seededRandom(this.seed + 7919 * (instance + 1)),
    });
    // What start() does for tasks (picking up work left in the store); the purge timer is left out.
    rotor.tasks.start();
    this.rotors.push(rotor);
  }

  private app(instance: number): RotorApp {
    const bump = (sessionId: string): number => {
      const n = (this.handled.get(sessionId) ?? 0) + 1;
      this.handled.set(sessionId, n);
      return n;
    };
    return {
      routes: {
        'GET /read': (req) => ({ body: String(bump(req.sessionId)), contentType: 'text/plain' }),
        'POST /work': (req) => {
          const n = bump(req.sessionId);
          return { body: String(n), defer: { task: 'count', payload: { n } } };
        },
      },
      tasks: {
        count: async (payload, ctx) => {
          const next = this.deferredBy.get(ctx.taskId);
          const run: TaskRun = {
            taskId: ctx.taskId,
            at: this.now(),
            clientAcked: next !== undefined && this.presented.has(next),
            storeAcked: false,
            afterStop: this.stopped.has(instance),
          };
          const state = await this.store.loadSession(ctx.sessionId);
          if (next !== undefined && state) {
            const gen = verifyToken(this.keys, next).generation;
            run.storeAcked = state.gen > gen || (state.gen === gen && state.acked);
          }
          this.runs.push(run);
          return `count ${(payload as { n: number }).n}`;
        },
      },
    };
  }

  /** Dispatch all frames at once (in this order: one session's frames queue in arrival order). */
  async dispatch(frames: RequestFrame[]): Promise<Buffer[]> {
    for (const frame of frames) {
      const token = getHeader(frame, 'Token');
      if (token !== undefined) this.presented.add(token);
    }
    const replies = await Promise.all(frames.map((frame) => this.rotor.dispatch(frame)));
    for (const reply of replies) assert.equal(reply.close, false, 'an exchange error must not close the connection');
    return replies.map((reply) => reply.bytes);
  }

  async idle(): Promise<void> {
    for (const rotor of this.rotors) await rotor.tasks.idle();
  }

  async close(): Promise<void> {
    for (const rotor of this.rotors) await rotor.stop();
  }
}

// ---- one exchange: expected reply, then the model moves -------------------------------------------

interface Step {
  readonly s: ModelSession;
  readonly gen: number;
  readonly action: Action;
  readonly taskId: string;
  /** The reply never reaches the client. */
  readonly lose: boolean;
  /** The token is sent altered like this. */
  readonly forgery?: Forgery;
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const FORGERIES = ['padding', 'unused bits', 'other key id', 'claims'] as const;
type Forgery = (typeof FORGERIES)[number];

/** A token that differs from `token` (some spellings decode to the same bytes). */
function forge(token: string, how: Forgery): string {
  const flip = (char: string) => BASE64URL[BASE64URL.indexOf(char) ^ 1];
  switch (how) {
    case 'padding':
      return `${token}==`;
    case 'unused bits':
      return token.slice(0, -1) + flip(token.slice(-1));
    case 'other key id':
      return `k2${token.slice(token.indexOf('.'))}`;
    case 'claims': {
      const at = token.indexOf('.') + 5;
      return token.slice(0, at) + flip(token[at]) + token.slice(at + 1);
    }
  }
}

function step(m: Model, s: ModelSession, gen: number, action: Action, lose = false): Step {
  // A task of this session, else another session's (must be unknown here), else none at all.
  const other = m.sessions.find((o) => o !== s && o.taskIds.length > 0);
  const taskId = s.taskIds.at(-1) ?? other?.taskIds.at(-1) ?? 'AAAAAAAAAAAAAAAA';
  return { s, gen, action, taskId, lose: lose && (ROTATING as readonly string[]).includes(action) };
}

interface Expected {
  status: number;
  reason: string;
  headers: Header[];
  body: string | undefined;
}

function expectReply(bytes: Buffer, status: number, headers: Header[], body?: string): void {
  const reply = parseReply(bytes);
  const actual: Expected = {
    status: reply.status,
    reason: reply.reason,
    headers: reply.headers.map(([name, value]) => [name, value] as const),
    body: reply.body?.toString('latin1'),
  };
  assert.deepEqual(actual, { status, reason: reasonFor(status), headers, body });
}

function settleExchange(m: Model, w: World, st: Step, bytes: Buffer): void {
  const { s } = st;
  const now = m.now;
  const ending = st.action === 'logout' || st.action === 'delete';
  const verdict = classify(s, st.gen, now, ending);
  const where = `${s.label} gen ${st.gen}/${s.tokens.length} ${st.action}`;
  if (st.forgery) {
    // Refused before anything else: no lookup, no revocation, nothing processed.
    seen('ROTOR_E_TOKEN_INVALID');
    return expectReply(bytes, 401, [['Error', 'ROTOR_E_TOKEN_INVALID']]);
  }
  if (verdict.kind === 'error') {
    seen(verdict.code);
    expectReply(bytes, ERRORS[verdict.code].status, [['Error', verdict.code]]);
    if (verdict.code === 'ROTOR_E_TOKEN_REUSED') revokeModel(s, 'reuse');
    return;
  }
  if (verdict.kind === 'replay') {
    seen('replay');
    assert.ok(s.prevReply, `${where}: the model keeps the reply to replay`);
    assert.ok(bytes.equals(s.prevReply), `${where}: a replay must be the first reply, byte for byte`);
    if (!st.lose) learn(s);
    return;
  }
  if (ending && st.gen === s.tokens.length - 1) {
    // The client lost the last reply and ends the session: what that reply held never runs.
    seen('end with the previous token');
    expectReply(bytes, st.action === 'logout' ? 200 : 202, []);
    return revokeModel(s, st.action === 'logout' ? 'logout' : 'deleted');
  }
  // Proceed: the token first acknowledges its predecessor.
  if (!s.acked) {
    s.acked = true;
    s.prevReply = null;
    for (const task of s.held) {
      task.state = 'queued';
      task.releasedAt = now;
      seen('release');
    }
    s.held = [];
  }
  seen(`proceed ${st.action}`);
  if (st.action === 'ack') return expectReply(bytes, 200, []);
  if (st.action === 'logout' || st.action === 'delete') {
    expectReply(bytes, st.action === 'logout' ? 200 : 202, []);
    return revokeModel(s, st.action === 'logout' ? 'logout' : 'deleted');
  }
  const reply = parseReply(bytes);
  const token = getHeader(reply, 'Token');
  assert.ok(token, `${where}: a processed exchange rotates`);
  const claims = verifyToken(w.keys, token);
  assert.deepEqual(
    claims,
    { session: s.id, generation: s.tokens.length + 1, issued: Math.floor(now / 1000), ttlMinutes: TTL_MINUTES, user: s.user },
    `${where}: the next token's claims`,
  );
  let deferred: ModelTask | undefined;
  switch (st.action) {
    case 'read':
      s.handled++;
      expectReply(bytes, 200, [['Token', token], ['Content-Type', 'text/plain']], String(s.handled));
      break;
    case 'work': {
      s.handled++;
      const id = getHeader(reply, 'Task') ?? '';
      assert.ok(id !== '' && !m.tasks.has(id), `${where}: a new task id`);
      expectReply(bytes, 202, [['Token', token], ['Task', id], ['Wait-for', '1']], String(s.handled));
      deferred = { id, session: s, state: 'held', result: `count ${s.handled}` };
      m.tasks.set(id, deferred);
      w.deferredBy.set(id, token);
      break;
    }
    case 'resume':
      expectReply(bytes, 200, [['Token', token]]);
      break;
    case 'task': {
      const task = m.tasks.get(st.taskId);
      if (!task || task.session !== s) {
        seen('task unknown');
        expectReply(bytes, 404, [['Token', token], ['Error', 'ROTOR_E_TASK_UNKNOWN']]);
      } else if (task.state === 'queued') {
        seen('task pending');
        expectReply(bytes, 202, [['Token', token], ['Task', task.id], ['Wait-for', '1']]);
      } else {
        assert.equal(task.state, 'done', `${where}: the model asks about a task of a live session`);
        seen('task done');
        expectReply(bytes, 200, [['Token', token], ['Content-Type', 'text/plain; charset=utf-8']], task.result);
      }
      break;
    }
  }
  s.tokens.push({ token, gen: s.tokens.length + 1, expiresAt: tokenExpiry(now) });
  s.acked = false;
  s.prevReply = bytes;
  s.held = deferred ? [deferred] : [];
  if (st.lose) seen('lost reply');
  else learn(s);
}

/** Dispatch the steps' frames at once, then check each reply in order. */
async function exchange(m: Model, w: World, steps: Step[]): Promise<void> {
  const frames = steps.map((st) => {
    const token = st.s.tokens[st.gen - 1].token;
    return frameFor(st.action, st.forgery ? forge(token, st.forgery) : token, st.taskId);
  });
  const replies = await w.dispatch(frames);
  steps.forEach((st, i) => settleExchange(m, w, st, replies[i]));
}

// ---- invariants -------------------------------------------------------------------------------

/** After the runner is idle: what ran is exactly what the model released, once, after its ack. */
async function checkInvariants(m: Model, w: World): Promise<void> {
  await w.idle();
  const runs = new Map<string, number>();
  for (const run of w.runs) {
    runs.set(run.taskId, (runs.get(run.taskId) ?? 0) + 1);
    const task = m.tasks.get(run.taskId);
    assert.ok(task, `task ${run.taskId} ran but was never deferred`);
    assert.ok(task.state === 'queued' || task.state === 'done', `task ${run.taskId} ran while ${task.state}`);
    assert.ok(run.clientAcked, `task ${run.taskId} ran before the client sent the token of its reply`);
    assert.ok(run.storeAcked, `task ${run.taskId} ran before the store recorded the ack`);
    assert.ok(!run.afterStop, `task ${run.taskId} ran on a node after stop() had returned`);
    assert.ok(run.at >= (task.releasedAt ?? Infinity), `task ${run.taskId} ran before its release`);
  }
  for (const task of m.tasks.values()) {
    if (task.state === 'queued') task.state = 'done';
    assert.equal(runs.get(task.id) ?? 0, task.state === 'done' ? 1 : 0, `runs of task ${task.id} (${task.state})`);
  }
  for (const s of m.sessions) {
    assert.equal(w.handled.get(s.id) ?? 0, s.handled, `${s.label}: app handler runs`);
    const stored = await w.store.loadSession(s.id);
    assert.ok(stored, `${s.label}: the store keeps the session`);
    assert.deepEqual(
      { gen: stored.gen, acked: stored.acked, revoked: stored.revoked?.reason ?? null, held: stored.held.map((task) => task.id) },
      { gen: s.tokens.length, acked: s.acked, revoked: s.revoked, held: s.held.map((task) => task.id) },
      `${s.label}: stored state`,
    );
  }
}

const PROBE_APP: RotorApp = { routes: {}, tasks: { count: async () => undefined } };

/**
 * Present every token a session ever had, each to its own copy of the stored session (so the
 * probes change nothing): each must do what the model says, and at most one may start work.
 */
async function probe(m: Model, w: World): Promise<void> {
  for (const s of m.sessions) {
    const state = await w.store.loadSession(s.id);
    assert.ok(state, `${s.label}: the store keeps the session`);
    let current = 0;
    for (const issued of s.tokens) {
      const store = new MemoryStore();
      await store.createSession(state);
      const rotor = new Rotor({ config, store, app: PROBE_APP, keys: w.keys, log, now: () => m.now, random: seededRandom(issued.gen), nodeId: 'probe' });
      const { bytes } = await rotor.dispatch(frameFor('resume', issued.token, ''));
      await rotor.stop();
      const reply = parseReply(bytes);
      // A replayed reply may itself carry an Error (an app error rotates too): replay first.
      const replayed: boolean = state.prev !== null && bytes.equals(replyFromRest(w.keys, state.prev.reply, state.tokenHash)!);
      const outcome: string = replayed ? 'replay' : (errorCode(reply) ?? (getHeader(reply, 'Token') ? 'proceed' : 'other'));
      const verdict = classify(s, issued.gen, m.now);
      assert.equal(outcome, verdict.kind === 'error' ? verdict.code : verdict.kind, `probe ${s.label} token ${issued.gen}/${s.tokens.length}`);
      if (outcome === 'proceed') current++;
    }
    const live = !s.revoked && m.now < s.tokens[s.tokens.length - 1].expiresAt;
    assert.ok(current <= 1, `${s.label}: ${current} tokens can start work`);
    assert.equal(current, live ? 1 : 0, `${s.label}: tokens that can start work`);
  }
}

// ---- commands ---------------------------------------------------------------------------------------

type Cmd = fc.AsyncCommand<Model, World>;
const pick = (m: Model, c: number): ModelSession => m.sessions[c % m.sessions.length];

class Login implements Cmd {
  constructor(
    readonly user: string,
    readonly good: boolean,
  ) {}
  check = (m: Model) => m.sessions.length < MAX_SESSIONS;
  async run(m: Model, w: World): Promise<void> {
    const headers: Header[] = [['User', this.user], ['Password', this.good ? PASSWORD : 'wrong']];
    const [bytes] = await w.dispatch([request('POST', '/rotor/login', headers)]);
    if (!this.good) {
      expectReply(bytes, 401, [['Error', 'ROTOR_E_AUTH_FAILED']]);
    } else {
      const token = getHeader(parseReply(bytes), 'Token') ?? '';
      expectReply(bytes, 200, [['Token', token]]);
      const claims = verifyToken(w.keys, token);
      assert.equal(claims.generation, 1);
      assert.equal(claims.user, this.user);
      assert.ok(!m.sessions.some((s) => s.id === claims.session), 'a new session id');
      m.sessions.push({
        label: `s${m.sessions.length}`,
        id: claims.session,
        user: this.user,
        tokens: [{ token, gen: 1, expiresAt: tokenExpiry(m.now) }],
        known: 1,
        acked: false,
        prevReply: null,
        held: [],
        revoked: null,
        handled: 0,
        taskIds: [],
      });
    }
    await checkInvariants(m, w);
  }
  toString = () => `login(${this.user}${this.good ? '' : ', wrong password'})`;
}

/** Client traffic: some exchanges dispatched at once, then the invariants. */
class Traffic implements Cmd {
  constructor(
    private readonly name: string,
    private readonly applies: (m: Model) => boolean,
    private readonly steps: (m: Model) => Step[],
  ) {}
  check = (m: Model) => m.sessions.length > 0 && this.applies(m);
  async run(m: Model, w: World): Promise<void> {
    await exchange(m, w, this.steps(m));
    await checkInvariants(m, w);
  }
  toString = () => this.name;
}

const always = () => true;

/** The client sends a request with the newest token it holds; the reply may get lost. */
const send = (c: number, action: Action, lose: boolean) =>
  new Traffic(`send(#${c}, ${action}${lose ? ', reply lost' : ''})`, always, (m) => {
    const s = pick(m, c);
    return [step(m, s, s.known, action, lose)];
  });

/** The request is sent again with the token before the newest, before the ack. */
const retry = (c: number, action: Action) =>
  new Traffic(
    `retry(#${c}, ${action})`,
    (m) => pick(m, c).tokens.length >= 2 && !pick(m, c).acked,
    (m) => [step(m, pick(m, c), pick(m, c).tokens.length - 1, action)],
  );

/** Generations older than the replayable one that the client holds. */
function staleGens(s: ModelSession): number[] {
  const newest = s.tokens.length;
  const gens: number[] = [];
  for (let gen = 1; gen <= s.known; gen++) if (gen < newest - 1 || (gen === newest - 1 && s.acked)) gens.push(gen);
  return gens;
}

/** A token older than the replayable one: from a confused client, or a thief. */
const stale = (c: number, k: number, action: Action) =>
  new Traffic(
    `stale(#${c}, pick ${k}, ${action})`,
    (m) => staleGens(pick(m, c)).length > 0,
    (m) => {
      const gens = staleGens(pick(m, c));
      return [step(m, pick(m, c), gens[k % gens.length], action)];
    },
  );

/** Any token the session ever had, altered: refused as invalid, and changes nothing. */
const forged = (c: number, k: number, how: Forgery, action: Action) =>
  new Traffic(`forge(#${c}, token pick ${k}, ${how}, ${action})`, always, (m) => {
    const s = pick(m, c);
    return [{ ...step(m, s, 1 + (k % s.tokens.length), action), forgery: how }];
  });

/** The same frame twice at once (a duplicated packet, an over-eager retry). */
const duplicate = (c: number, action: Action) =>
  new Traffic(`duplicate(#${c}, ${action})`, always, (m) => {
    const s = pick(m, c);
    const st = step(m, s, s.known, action);
    return [st, st];
  });

/** Two different requests with the same token at once: one is processed, the other replayed. */
const together = (c: number, a: Action, b: Action) =>
  new Traffic(`together(#${c}, ${a} + ${b})`, always, (m) => {
    const s = pick(m, c);
    return [step(m, s, s.known, a), step(m, s, s.known, b)];
  });

/** Two clients' requests interleaved. */
const interleave = (c: number, d: number, a: Action, b: Action) =>
  new Traffic(
    `interleave(#${c} ${a}, other #${d} ${b})`,
    (m) => m.sessions.length >= 2,
    (m) => {
      const n = m.sessions.length;
      const first = c % n;
      const s1 = m.sessions[first];
      const s2 = m.sessions[(first + 1 + (d % (n - 1))) % n];
      return [step(m, s1, s1.known, a), step(m, s2, s2.known, b)];
    },
  );

class Clock implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: Model, w: World): Promise<void> {
    m.now += this.ms;
    await checkInvariants(m, w);
  }
  toString = () => `clock(+${this.ms} ms)`;
}

/** To the last millisecond before a token of the client expires, or to the first after. */
class ClockToExpiry implements Cmd {
  constructor(
    readonly c: number,
    readonly after: boolean,
  ) {}
  check = (m: Model) => m.sessions.length > 0;
  async run(m: Model, w: World): Promise<void> {
    const s = pick(m, this.c);
    const target = s.tokens[s.known - 1].expiresAt - (this.after ? 0 : 1);
    m.now = Math.max(m.now, target);
    await checkInvariants(m, w);
  }
  toString = () => `clock(#${this.c} token ${this.after ? 'just expired' : 'about to expire'})`;
}

/**
 * A new node on the same store. `after ack`: right after an ACK released work (the old node is
 * running it); `during ack`: the old node stops while the ACK is in flight, so the work it
 * releases is left in the store for the new node.
 */
class Restart implements Cmd {
  constructor(
    readonly mode: 'quiet' | 'after ack' | 'during ack',
    readonly c: number,
  ) {}
  check = (m: Model) => this.mode === 'quiet' || m.sessions.length > 0;
  async run(m: Model, w: World): Promise<void> {
    seen(m.sessions.some((s) => s.held.length > 0 || s.prevReply) ? 'restart with pending replies' : 'restart');
    const ack = (): Promise<void> => {
      const s = pick(m, this.c);
      return exchange(m, w, [step(m, s, s.known, 'ack')]);
    };
    if (this.mode === 'quiet') await w.restart();
    if (this.mode === 'after ack') {
      await ack();
      if ([...m.tasks.values()].some((task) => task.state === 'queued')) seen('restart while released work runs');
      await w.restart();
    }
    if (this.mode === 'during ack') {
      await Promise.all([ack(), w.restart()]);
      const released = [...m.tasks.values()].filter((task) => task.state === 'queued');
      // The new node's poll tick, which finds work released after its start.
      w.rotor.tasks.notify();
      await checkInvariants(m, w);
      // stop() came before the release: the stopped node must have left the work to the new one.
      for (const task of released) {
        seen('work released on a stopped node');
        assert.equal((await w.store.loadTask(task.id))?.worker, w.rotor.tasks.workerId, `task ${task.id} ran on the new node`);
      }
      return;
    }
    await checkInvariants(m, w);
  }
  toString = () => (this.mode === 'quiet' ? 'restart' : `restart (${this.mode} #${this.c})`);
}

class Probe implements Cmd {
  check = () => true;
  async run(m: Model, w: World): Promise<void> {
    await probe(m, w);
  }
  toString = () => 'probe every token';
}

const client = fc.nat({ max: 7 });
const weighted = <T>(pairs: Array<[T, number]>): fc.Arbitrary<T> =>
  fc.oneof(...pairs.map(([value, weight]) => ({ weight, arbitrary: fc.constant(value) })));
const rotating = weighted<Action>([['read', 3], ['work', 4], ['resume', 1], ['task', 3]]);
/** Mostly work, sometimes an ACK, rarely the end: sessions should live long enough to matter. */
const action = fc.oneof({ weight: 11, arbitrary: rotating }, { weight: 3, arbitrary: fc.constant<Action>('ack') }, { weight: 1, arbitrary: fc.constantFrom(...ENDING) });
const clockJump = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 5_000 }) },
  { weight: 2, arbitrary: fc.integer({ min: 20_000, max: 70_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: TTL_MS - 10_000, max: 2 * TTL_MS }) },
);
const goodPassword = weighted([[true, 9], [false, 1]]);
const command = (weight: number, arbitrary: fc.Arbitrary<Cmd>) => ({ weight, arbitrary });
/** One weighted choice per step: mostly traffic, now and then time, restarts and probes. */
const COMMANDS: fc.Arbitrary<Cmd>[] = [
  fc.oneof(
    command(2, fc.tuple(fc.constantFrom(...USER_NAMES), goodPassword).map(([user, good]) => new Login(user, good))),
    command(8, fc.tuple(client, rotating, fc.boolean()).map(([c, a, lose]) => send(c, a, lose))),
    command(4, fc.tuple(client, action).map(([c, a]) => send(c, a, false))),
    command(3, fc.tuple(client, action).map(([c, a]) => retry(c, a))),
    command(2, fc.tuple(client, fc.nat(), action).map(([c, k, a]) => stale(c, k, a))),
    command(1, fc.tuple(client, fc.nat(), fc.constantFrom(...FORGERIES), action).map(([c, k, how, a]) => forged(c, k, how, a))),
    command(2, fc.tuple(client, action).map(([c, a]) => duplicate(c, a))),
    command(3, fc.tuple(client, action, action).map(([c, a, b]) => together(c, a, b))),
    command(3, fc.tuple(client, client, action, action).map(([c, d, a, b]) => interleave(c, d, a, b))),
    command(3, clockJump.map((ms) => new Clock(ms))),
    command(1, fc.tuple(client, fc.boolean()).map(([c, after]) => new ClockToExpiry(c, after))),
    command(3, fc.tuple(fc.constantFrom('quiet' as const, 'after ack' as const, 'during ack' as const), client).map(([mode, c]) => new Restart(mode, c))),
    command(1, fc.constant(null).map(() => new Probe())),
  ),
];

t.test('the driver follows the rotation model over generated histories', async (t) => {
  const params = fcRuns(200, 2000, 'ROTOR_MODEL_RUNS');
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 0x7fffffff }), fc.commands(COMMANDS, { maxCommands: 40, size: 'max' }), async (seed, commands) => {
      const model: Model = { now: T0, sessions: [], tasks: new Map() };
      const world = new World(seed, () => model.now);
      await world.boot();
      try {
        // Every history starts with one client logged in; more log in as commands.
        await new Login(USER_NAMES[seed % 2], true).run(model, world);
        await fc.asyncModelRun(() => ({ model, real: world }), commands);
        await probe(model, world);
      } finally {
        await world.close();
      }
    }),
    params,
  );
  t.comment(`${params.numRuns} histories in ${Date.now() - started} ms; paths taken: ${JSON.stringify(coverage)}`);
  // Each rule must actually have been exercised (meaningful once there are enough histories).
  if (params.numRuns >= 200) {
    for (const path of [
      'replay',
      'lost reply',
      'release',
      'ROTOR_E_TOKEN_REUSED',
      'ROTOR_E_SESSION_REVOKED',
      'ROTOR_E_TOKEN_EXPIRED',
      'ROTOR_E_TOKEN_INVALID',
      'proceed ack',
      'proceed logout',
      'end with the previous token',
      'proceed delete',
      'proceed work',
      'task pending',
      'task done',
      'task unknown',
      'restart with pending replies',
      'restart while released work runs',
      'work released on a stopped node',
    ]) {
      t.ok((coverage[path] ?? 0) > 0, `histories reached: ${path}`);
    }
  } else {
    t.pass(`${params.numRuns} histories`);
  }
});
