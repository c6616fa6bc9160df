/**
 * What a lane (one session, one request in flight) sends next and how it judges the answer.
 * Requests are built once by the codec (`serializeFrame`) as templates with the token cut out,
 * so the hot path is two string concatenations per request, not a frame object and a
 * validation pass.
 */
import { serializeFrame, type Header, type RequestFrame, type ResponseFrame } from '../wire/index.ts';
import { newCode } from '../quotas/codes.ts';
import { seededRandom } from '../session/random.ts';
import { mac } from '../session/token.ts';
import { freshAppKeys } from '../seal/apps.ts';
import { startOpen, type PendingOpen } from '../seal/instance.ts';
import { sealProof } from '../seal/proof.ts';
import { BENCH_APP_SEED, BENCH_CODE_SEED, BENCH_CODES, BENCH_POOL, type Scenario } from './types.ts';

export interface Lane {
  readonly id: number;
  /** The newest token this lane holds; undefined until it has logged in (or after its session ended). */
  token: string | undefined;
  /** When its request in flight was sent (performance.now(), ms). */
  sentAt: number;
  /** What the request in flight is: the scenario's own work, or a login to get a session. */
  sending: 'op' | 'login';
  /** Tasks scenario: the task being waited for. */
  taskId: string | undefined;
  /** Requests this lane has sent: varies the bodies. */
  n: number;
}

export function newLane(id: number): Lane {
  return { id, token: undefined, sentAt: 0, sending: 'op', taskId: undefined, n: 0 };
}

export interface Credentials {
  user: string;
  password: string;
}

export interface ScenarioDriver {
  /** Lanes log in before the clock starts, and again if the server ends their session. */
  readonly needsSession: boolean;
  /** The login a lane opens its session with; left out: User and Password. */
  login?(lane: Lane): string;
  /**
   * A login of more than one exchange (a sealed open: nonce, open, confirmation): judges each
   * reply to `login` — `more` sends `login` again for the next step, `done` the lane holds its
   * session (`lane.token`), else an error code. Left out: a reply with a Token is the session.
   */
  loginStep?(lane: Lane, frame: ResponseFrame): 'more' | 'done' | string;
  /** The lane's next request (it holds a token when needsSession). */
  next(lane: Lane): string;
  /** Judge the answer to `next`: undefined when it did what it should, else an error code. */
  judge(lane: Lane, frame: ResponseFrame, counters: Record<string, number>): string | undefined;
}

/** Codes after which a token is worthless: the lane must log in again. */
const SESSION_ENDING = new Set(['ROTOR_E_TOKEN_REUSED', 'ROTOR_E_TOKEN_EXPIRED', 'ROTOR_E_SESSION_REVOKED', 'ROTOR_E_SESSION_UNKNOWN', 'ROTOR_E_TOKEN_INVALID']);
const PLACEHOLDER = 'ROTORBENCHTOKEN';

/** A header by exact name first (the server's own spelling), then case-insensitively. */
export function header(frame: ResponseFrame, name: string): string | undefined {
  const headers = frame.headers;
  for (let i = 0; i < headers.length; i++) if (headers[i][0] === name) return headers[i][1];
  const lower = name.toLowerCase();
  for (let i = 0; i < headers.length; i++) if (headers[i][0].toLowerCase() === lower) return headers[i][1];
  return undefined;
}

/** A request with a Token header first, as latin1 text split around the token. */
export function tokenTemplate(verb: string, path: string, headers: Header[] = [], body?: Buffer): (token: string) => string {
  const text = serializeFrame({ kind: 'request', verb, path, headers: [['Token', PLACEHOLDER], ...headers], body }).toString('latin1');
  const at = text.indexOf(PLACEHOLDER);
  const head = text.slice(0, at);
  const tail = text.slice(at + PLACEHOLDER.length);
  return (token) => head + token + tail;
}

export function frameText(frame: RequestFrame): string {
  return serializeFrame(frame).toString('latin1');
}

export function loginRequest(credentials: Credentials): string {
  return frameText({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['User', credentials.user], ['Password', credentials.password]], body: undefined });
}

/**
 * The common rule of every token exchange: take the new token when there is one; an error
 * without one leaves the lane on its token (retry) unless the error ended the session.
 */
function exchanged(lane: Lane, frame: ResponseFrame): string | undefined {
  const token = header(frame, 'Token');
  if (token !== undefined) lane.token = token;
  const code = header(frame, 'Error');
  if (code !== undefined) {
    if (SESSION_ENDING.has(code)) lane.token = undefined;
    return code;
  }
  if (token === undefined) return 'NO_TOKEN';
  return undefined;
}

/** The bench lot's codes: seeded, so the server and the load generator make the same ones — never do this outside a bench. */
export function benchCodes(): string[] {
  const random = seededRandom(BENCH_CODE_SEED);
  return Array.from({ length: BENCH_CODES }, () => newCode(random));
}

const REVERSE_BODY = Buffer.from('rotor benchmark payload');
const REVERSED = Buffer.from(REVERSE_BODY).reverse();

export function scenarioDriver(scenario: Scenario, credentials: Credentials): ScenarioDriver {
  switch (scenario) {
    case 'rotate': {
      const hello = tokenTemplate('GET', '/hello');
      return {
        needsSession: true,
        next: (lane) => hello(lane.token!),
        judge: (lane, frame) => exchanged(lane, frame) ?? (frame.status === 200 ? undefined : `STATUS_${frame.status}`),
      };
    }
    case 'quota': {
      // As rotate, but each lane logs in with its own access code (one connection per code).
      const hello = tokenTemplate('GET', '/hello');
      const codes = benchCodes();
      return {
        needsSession: true,
        login: (lane) => frameText({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['Code', codes[lane.id % codes.length]]], body: undefined }),
        next: (lane) => hello(lane.token!),
        judge: (lane, frame) => exchanged(lane, frame) ?? (frame.status === 200 ? undefined : `STATUS_${frame.status}`),
      };
    }
    case 'sealed':
      return sealedDriver();
    case 'meta': {
      // Eight keys cycle, so the metadata stays small however long the run is.
      const merges = Array.from({ length: 8 }, (_, k) =>
        tokenTemplate('PUT', '/rotor/token', [['Content-Type', 'application/json']], Buffer.from(JSON.stringify({ [`k${k}`]: 'v'.repeat(8 + k) }))),
      );
      return {
        needsSession: true,
        next: (lane) => merges[lane.n % merges.length](lane.token!),
        judge: (lane, frame) => {
          const error = exchanged(lane, frame);
          if (error !== undefined) return error;
          if (frame.status !== 200 || !frame.body || frame.body[0] !== 0x7b) return 'BAD_REPLY';
          return undefined;
        },
      };
    }
    case 'tasks': {
      const reverse = tokenTemplate('POST', '/reverse', [['Content-Type', 'application/octet-stream']], REVERSE_BODY);
      return {
        needsSession: true,
        next: (lane) =>
          lane.taskId === undefined
            ? reverse(lane.token!)
            : frameText({ kind: 'request', verb: 'GET', path: `/rotor/tasks/${lane.taskId}`, headers: [['Token', lane.token!]], body: undefined }),
        judge: (lane, frame, counters) => {
          const polling = lane.taskId !== undefined;
          const error = exchanged(lane, frame);
          if (error !== undefined) {
            if (polling) lane.taskId = undefined;
            return error;
          }
          if (!polling) {
            const task = header(frame, 'Task');
            if (frame.status !== 202 || !task) return 'BAD_REPLY';
            lane.taskId = task;
            counters.deferred = (counters.deferred ?? 0) + 1;
            return undefined;
          }
          if (frame.status === 202) {
            counters.stillRunning = (counters.stillRunning ?? 0) + 1;
            return undefined;
          }
          lane.taskId = undefined;
          if (frame.status !== 200 || !frame.body || !frame.body.equals(REVERSED)) return 'BAD_REPLY';
          counters.completed = (counters.completed ?? 0) + 1;
          return undefined;
        },
      };
    }
    case 'login': {
      const login = loginRequest(credentials);
      return {
        needsSession: false,
        next: () => login,
        judge: (_lane, frame) => header(frame, 'Error') ?? (frame.status === 200 && header(frame, 'Token') ? undefined : 'BAD_REPLY'),
      };
    }
    case 'seats': {
      // Take, heartbeat, give back, round and round: every step a rotating exchange on one pool.
      const steps = [tokenTemplate('POST', `/rotor/seats/${BENCH_POOL}`), tokenTemplate('POST', `/rotor/seats/${BENCH_POOL}`), tokenTemplate('DELETE', `/rotor/seats/${BENCH_POOL}`)];
      return {
        needsSession: true,
        next: (lane) => steps[lane.n % steps.length](lane.token!),
        judge: (lane, frame, counters) => {
          const error = exchanged(lane, frame);
          if (error !== undefined) return error;
          const seat = header(frame, 'Seat');
          if (seat === undefined) return 'BAD_REPLY';
          counters[seat] = (counters[seat] ?? 0) + 1;
          return undefined;
        },
      };
    }
    case 'ping': {
      const ping = frameText({ kind: 'request', verb: 'GET', path: '/rotor/ping', headers: [], body: undefined });
      return {
        needsSession: false,
        next: () => ping,
        judge: (_lane, frame) => header(frame, 'Error') ?? (frame.status === 200 ? undefined : `STATUS_${frame.status}`),
      };
    }
  }
}

/** The bench app's id and key: the server registers it from the same seed. */
export function benchApp(): { id: string; key: string; publicKey: string } {
  return freshAppKeys(seededRandom(BENCH_APP_SEED));
}

/**
 * As rotate, on sealed sessions (spec §12): each lane is an instance of the bench app that opens
 * (nonce, open, confirmation) and then proves every GET /hello with its session key.
 */
function sealedDriver(): ScenarioDriver {
  const app = benchApp();
  interface Sealing {
    step: 'nonce' | 'open' | 'confirm';
    pending?: PendingOpen;
    key?: Buffer;
    nonce?: string;
    token?: string;
  }
  const lanes = new Map<number, Sealing>();
  const of = (lane: Lane): Sealing => {
    let sealing = lanes.get(lane.id);
    if (!sealing) lanes.set(lane.id, (sealing = { step: 'nonce' }));
    return sealing;
  };
  // The load generator's share kept small (one-shot HMAC, a template): the figure is the server's.
  const PROOF = 'ROTORBENCHPROOF';
  const templates = new Map<string, [string, string, string]>();
  const proven = (s: Sealing, token: string, verb: string, path: string): string => {
    let parts = templates.get(`${verb} ${path}`);
    if (!parts) {
      const text = frameText({ kind: 'request', verb, path, headers: [['Token', PLACEHOLDER], ['Seal-Proof', PROOF]], body: undefined });
      const [head, rest] = text.split(PLACEHOLDER);
      const [middle, tail] = rest.split(PROOF);
      templates.set(`${verb} ${path}`, (parts = [head, middle, tail]));
    }
    return parts[0] + token + parts[1] + sealProof(s.key!, s.nonce!, verb, path, undefined, mac) + parts[2];
  };
  return {
    needsSession: true,
    login: (lane) => {
      const s = of(lane);
      if (s.step === 'nonce') return frameText({ kind: 'request', verb: 'GET', path: '/rotor/seal', headers: [], body: undefined });
      if (s.step === 'open') return frameText({ kind: 'request', verb: 'POST', path: '/rotor/seal', headers: s.pending!.headers, body: undefined });
      return proven(s, s.token!, 'POST', '/rotor/ack');
    },
    loginStep: (lane, frame) => {
      const s = of(lane);
      const code = header(frame, 'Error');
      if (code !== undefined) {
        s.step = 'nonce';
        return code;
      }
      if (s.step === 'nonce') {
        s.pending = startOpen({ app: app.id, instance: `bench-${lane.id}`, key: app.key }, header(frame, 'Seal-Nonce')!);
        s.step = 'open';
        return 'more';
      }
      if (s.step === 'open') {
        s.key = s.pending!.sessionKey(header(frame, 'Seal-Key')!);
        s.token = header(frame, 'Token');
        s.nonce = header(frame, 'Seal-Nonce');
        s.step = 'confirm';
        return 'more';
      }
      lane.token = s.token;
      s.step = 'nonce';
      return 'done';
    },
    next: (lane) => proven(of(lane), lane.token!, 'GET', '/hello'),
    judge: (lane, frame) => {
      const nonce = header(frame, 'Seal-Nonce');
      if (nonce !== undefined) of(lane).nonce = nonce;
      return exchanged(lane, frame) ?? (frame.status === 200 ? undefined : `STATUS_${frame.status}`);
    },
  };
}
