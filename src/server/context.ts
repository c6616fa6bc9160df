/**
 * What every operation of the dispatcher works with: the server's parts (config, store, keys,
 * clock, randomness, logs, metrics, task runner), the note each frame leaves for the metrics and
 * the logs, and the small helpers operations share (refusing, minting a token, a request's JSON
 * metadata body).
 */
import { ERRORS, RotorError, type ErrorCode } from '../errors.ts';
import type { RotorConfig } from '../config/defaults.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics, Operation as OperationName, Outcome as ExchangeOutcome } from '../metrics/index.ts';
import type { RandomSource } from '../session/random.ts';
import { claimsExpireAt, clientBinding, mintHashedToken, type KeyRing } from '../session/token.ts';
import type { SessionState, TaskSpec } from '../session/types.ts';
import type { Store } from '../store/types.ts';
import { errorReply, getHeader, Reply, type Header, type RequestFrame } from '../wire/index.ts';
import type { KeyedSerializer } from './locks.ts';
import type { TaskRunner } from './tasks.ts';
import type { HandOver } from '../handover/index.ts';
import type { Seals } from '../seal/service.ts';

export const SERVER_NAME = 'rotor/0.1.0';
export const JSON_TYPE = 'application/json';

export interface DispatchContext {
  readonly config: RotorConfig;
  readonly store: Store;
  readonly keys: KeyRing;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly tasks: TaskRunner;
  readonly now: () => number;
  readonly random: RandomSource;
  /** One session's exchanges run one at a time in this process, in arrival order. */
  readonly locks: KeyedSerializer;
  /** How long a revoked session is remembered (its tokens get SESSION_REVOKED, not SESSION_UNKNOWN). */
  readonly revokedRetentionMs: number;
  /** Told once a session has ended (logout, delete, revocation), after that is stored: what it held goes back (seats). */
  readonly sessionEnded: (ended: SessionState, now: number) => Promise<void>;
  /** Hand-over to and from peers (spec §11), when this server has a peers file (Rotor.useHandOver). */
  handOver: HandOver | undefined;
  /** Sealed application sessions (spec §12): proofs, session keys, open nonces. */
  readonly seals: Seals;
}

/**
 * What one frame came to, noted as the dispatcher decides it; the metrics and the logs read it
 * once the reply is ready.
 */
export interface Note {
  operation: OperationName;
  /** Set where the reply is decided: ok, replay, or the reply's Error code. */
  outcome: ExchangeOutcome;
  session: string | undefined;
  user: string | undefined;
  /** A login got past its password: an AUTH_FAILED after that was its TOTP code. */
  passwordOk: boolean;
}

/** A processed exchange before its token is attached. */
export interface Outcome {
  status: number;
  headers: Header[];
  body?: Buffer | undefined;
  error?: ErrorCode;
  tasks: TaskSpec[];
  meta: Readonly<Record<string, unknown>>;
  /** Its headers hand the client over (spec §11): the kept copy loses the hand-over token's signature. */
  handOver?: boolean | undefined;
}

/** An error reply, noted as the frame's outcome. */
export function refused(note: Note, code: ErrorCode, extra?: Header[]): Reply {
  note.outcome = code;
  return errorReply(code, extra);
}

export function plainReply(status: number, headers: Header[], body?: Buffer): Reply {
  return Reply.of(status, headers, body);
}

export function errorOutcome(code: ErrorCode): { status: number; headers: Header[]; error: ErrorCode } {
  return { status: ERRORS[code].status, headers: [], error: code };
}

/** A new token of `sessionId` with the configured lifetime from `now`, and the hash its session keeps. */
export function mint(
  ctx: DispatchContext,
  sessionId: string,
  generation: number,
  user: string,
  now: number,
  binding?: string,
): { token: string; hash: string; expiresAt: number | null } {
  const issued = Math.floor(now / 1000);
  const ttlMinutes = ctx.config.session.tokenTtlMinutes;
  const { token, hash } = mintHashedToken(ctx.keys, { session: sessionId, generation, issued, ttlMinutes, user, binding }, ctx.random);
  return { token, hash, expiresAt: claimsExpireAt({ issued, ttlMinutes }) };
}

/** What a request from `address` (an addressKey) binds a token to, as the server binds clients (spec §2); undefined when it binds nothing. */
export function bindingOf(ctx: DispatchContext, frame: RequestFrame, address: string): string | undefined {
  return clientBinding(ctx.config.session.bindClients, getHeader(frame, 'Client-Info'), address);
}

/** A request body of JSON metadata: absent or empty means {}, anything but an object is refused. */
export function parseMetaBody(frame: RequestFrame, maxBytes: number): Record<string, unknown> {
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
