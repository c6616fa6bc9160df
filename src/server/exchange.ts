/**
 * A token exchange, the heart of the dispatcher: verify the token (no store), then, under the
 * session's lock, load → admit (the pure machine) → perform the operation → compare-and-set,
 * again from the load when another node changed the session in between, at most
 * `session.maxCommitRetries` times before ROTOR_E_CONFLICT. The operation decides only what
 * its exchange does; storing, rotating, replaying and refusing happen here, the same for all.
 */
import { RotorError, reasonFor, type ErrorCode } from '../errors.ts';
import { admit, releasedTasks, revoke, rotate } from '../session/machine.ts';
import { sessionWith } from '../session/state.ts';
import { charged, endedAt, keepUntil, meterLimit } from '../quotas/machine.ts';
import { LIMIT_ERRORS } from '../quotas/ledger.ts';
import type { QuotaLimit } from '../quotas/types.ts';
import { hasSeen, staleVerdict, type PresentedProof } from '../seal/machine.ts';
import { replyAtRestOf, replyFromRest } from '../session/replay.ts';
import { claimsExpireAt, presentedHash, verifyHashedToken, type VerifiedToken } from '../session/token.ts';
import { addressKey, type Origin } from '../net/origin.ts';
import type { RevokeReason, SessionState, TaskSpec } from '../session/types.ts';
import type { TaskRecord } from '../store/types.ts';
import { frameSize, getHeader, Reply, serializeFrame, type Header, type RequestFrame, type ResponseFrame } from '../wire/index.ts';
import { bindingOf, mint, refused, type DispatchContext, type Note, type Outcome } from './context.ts';

/** What an admitted operation does: end without a new token (`settle`), or rotate with an outcome. */
export type Step =
  /** Reply without a new token; `state` is written unless it is undefined or the state as loaded. */
  | { kind: 'settle'; state: SessionState | undefined; reply: Reply }
  /** Mint the next token, reply with it and this outcome, keep the reply for replay. */
  | { kind: 'rotate'; outcome: Outcome };

export interface ExchangeOperation {
  /** Ends the session (logout, delete): the token before the newest proceeds instead of getting the replay. */
  readonly ending?: boolean;
  /** A bare acknowledgement: in a sealed session a spent one is never taken for a clone's request (spec §12). */
  readonly acknowledging?: boolean;
  /**
   * `admitted` is the state the machine let through (it may have acked `loaded`), `released`
   * the tasks that ack released, `requestBytes` the request's size in frame bytes when the
   * session is metered (spec §10; else 0). Reads only; the exchange does every write.
   */
  perform(admitted: SessionState, released: readonly TaskRecord[], now: number, requestBytes: number): Promise<Step> | Step;
}

/** Run `op` as an exchange of the frame's token. Throws RotorError for a token refused before the store. */
export function exchange(ctx: DispatchContext, frame: RequestFrame, op: ExchangeOperation, note: Note, origin?: Origin): Promise<Reply> {
  const token = getHeader(frame, 'Token');
  if (!token) throw new RotorError('ROTOR_E_TOKEN_MISSING');
  const verified = verifyHashedToken(ctx.keys, token);
  const claims = verified.claims;
  // With binding on, a token must be bound to the client presenting it (spec §2) — one made
  // before binding was turned on is bound to nobody and refused too. Nothing is read or changed.
  if (ctx.config.session.bindClients !== 'off' && claims.binding !== bindingOf(ctx, frame, addressKey(origin?.peer))) {
    note.session = claims.session;
    throw new RotorError('ROTOR_E_CLIENT_MISMATCH');
  }
  const expiresAt = claimsExpireAt(claims);
  // A token made never-expiring while the operator allowed it dies when they stop allowing it.
  if (expiresAt === null ? !ctx.config.session.allowNeverExpiring : ctx.now() >= expiresAt) throw new RotorError('ROTOR_E_TOKEN_EXPIRED');
  note.session = claims.session;
  // No await before the lock: frames of one session queue in arrival order.
  return ctx.locks.run(claims.session, () => exchangeLocked(ctx, frame, token, verified, op, note));
}

async function exchangeLocked(ctx: DispatchContext, frame: RequestFrame, token: string, verified: VerifiedToken, op: ExchangeOperation, note: Note): Promise<Reply> {
  const sessionId = verified.claims.session;
  const gen = verified.claims.generation;
  /** An attempt got as far as performing the operation (its side effects, if any, are done). */
  let performed = false;
  /** A sealed session's request: its proof, checked once (spec §12). */
  let proof: PresentedProof | undefined;
  for (let attempt = 0; attempt < ctx.config.session.maxCommitRetries; attempt++) {
    const store = ctx.store;
    const loaded = store.loadSessionNow ? store.loadSessionNow(sessionId) : await store.loadSession(sessionId);
    if (!loaded) return refused(note, 'ROTOR_E_SESSION_UNKNOWN');
    // A session opened without a login (note 004's POST /token) has no user.
    note.user = loaded.user || undefined;
    const now = ctx.now();
    if (loaded.seal !== null && proof === undefined) {
      // Before the machine sees the token: a request without the session key's proof changes nothing.
      const checked = ctx.seals.check(sessionId, loaded.seal, frame, verified.hash, gen, op.acknowledging === true);
      if (typeof checked === 'string') return refused(note, checked);
      // An app or instance the operator removed: its sessions end (within seal.registeredSeconds).
      const registered = loaded.revoked ? undefined : ctx.seals.registered(loaded.seal, now);
      const unregistered = registered instanceof Promise ? await registered : registered;
      if (unregistered !== undefined) {
        const ended = await endSession(ctx, loaded, 'unregistered', loaded.rev, now, note, unregistered);
        if (ended) return ended;
        continue;
      }
      proof = checked;
    }
    const stored = gen === loaded.gen ? loaded.tokenHash : loaded.prev?.hash;
    const presented = { gen, hash: presentedHash(stored, token, verified.hash) };
    const admission = admit(loaded, presented, now, now + ctx.revokedRetentionMs, op.ending === true);
    if (admission.verdict === 'replay') {
      // Undefined: the key that signed the next token was retired since (that token is dead
      // anyway), or the kept reply is not the one this session's newest token came in.
      const bytes = replyFromRest(ctx.keys, admission.reply, loaded.tokenHash);
      if (!bytes) {
        ctx.log.warn({ session: sessionId }, 'kept reply cannot be replayed: its key is retired or it does not hold the newest token');
        return refused(note, 'ROTOR_E_TOKEN_INVALID');
      }
      let kept = loaded;
      if (loaded.quota !== null) {
        // A metered replay is an exchange like any other (spec §10): refused past a limit, else counted.
        const requestBytes = frameSize(frame);
        const limit = meterLimit(loaded.quota, requestBytes, now);
        if (limit !== undefined) {
          const ended = await endAtLimit(ctx, loaded, loaded.rev, limit, now, note);
          if (ended) return ended;
          continue;
        }
        kept = sessionWith(loaded, { quota: charged(loaded.quota, requestBytes, bytes.length, now, loaded.quota.tokenExpiresAt) });
      }
      // A sealed retry with a proof not seen before is remembered: sent again later, it is a replay, not a clone (spec §12).
      if (proof !== undefined && !hasSeen(loaded.seal!, proof)) kept = sessionWith(kept, { seal: ctx.seals.after(sessionId, loaded.seal!, proof, loaded.gen) });
      if (kept !== loaded && !(await ctx.store.commitSession(kept, loaded.rev, []))) continue;
      note.outcome = 'replay';
      return Reply.fromBytes(ctx.handOver ? ctx.handOver.fromRest(bytes, loaded) : bytes);
    }
    if (admission.verdict === 'reject') {
      // A spent token with a proof the session accepted before (or an ack): a capture sent again, not a clone (spec §12).
      if (proof !== undefined && admission.code === 'ROTOR_E_TOKEN_REUSED' && staleVerdict(loaded.seal!, proof) === 'replayed') return refused(note, 'ROTOR_E_SEAL_REPLAYED');
      if (admission.state && !(await ctx.store.commitSession(admission.state, loaded.rev, []))) continue;
      // Revoked here — or elsewhere while an earlier attempt of this exchange performed its
      // operation (a seat it took must not outlive the session): what the session holds goes back.
      if (admission.state?.revoked && !loaded.revoked) await ctx.sessionEnded(admission.state, now);
      else if (performed && loaded.revoked) await ctx.sessionEnded(loaded, now);
      return refused(note, admission.code);
    }
    const admitted = admission.state;
    const released = admission.effects.length === 0 ? NO_RECORDS : taskRecords(admitted, releasedTasks(admission.effects), now);
    // A session of an access code (spec §10): this request is counted, or the limit it meets ends the session.
    const requestBytes = admitted.quota === null ? 0 : frameSize(frame);
    const limit = admitted.quota === null ? undefined : meterLimit(admitted.quota, requestBytes, now);
    if (limit !== undefined) {
      const ended = await endAtLimit(ctx, admitted, loaded.rev, limit, now, note);
      if (ended) return ended;
      continue;
    }
    performed = true;
    const reply = await performAndCommit(ctx, loaded, admitted, op, released, now, note, verified.claims.binding, requestBytes, proof);
    if (!reply) continue;
    taskReleased(ctx, released);
    return reply;
  }
  return refused(note, 'ROTOR_E_CONFLICT');
}

/**
 * End a metered session at `limit` (spec §10): stored revoked with its counters, what it held
 * cancelled — work an ack just released too: the session it belongs to is over. Undefined when
 * the session changed under it (retry).
 */
function endAtLimit(ctx: DispatchContext, state: SessionState, rev: number, limit: QuotaLimit, now: number, note: Note): Promise<Reply | undefined> {
  return endSession(ctx, sessionWith(state, { quota: endedAt(state.quota!, limit, now) }), 'quota', rev, now, note, LIMIT_ERRORS[limit], [['Quota-Limit', limit]]);
}

/**
 * Revoke `state` for `reason`, store that at `rev + 1`, hand back what it held, and refuse with
 * `code`; undefined when the session changed under it (retry).
 */
async function endSession(ctx: DispatchContext, state: SessionState, reason: RevokeReason, rev: number, now: number, note: Note, code: ErrorCode, extra?: Header[]): Promise<Reply | undefined> {
  const ended = revoke(state, reason, now, now + ctx.revokedRetentionMs).state;
  if (!(await ctx.store.commitSession(ended, rev, []))) return undefined;
  await ctx.sessionEnded(ended, now);
  return refused(note, code, extra);
}

/** Carry out an admitted operation and store its result; undefined when the session changed under it (retry). */
async function performAndCommit(
  ctx: DispatchContext,
  loaded: SessionState,
  admitted: SessionState,
  op: ExchangeOperation,
  released: readonly TaskRecord[],
  now: number,
  note: Note,
  binding: string | undefined,
  /** A metered session's request, in frame bytes (0 for any other session). */
  requestBytes: number,
  /** A sealed session's request: the proof it came with (spec §12). */
  proof: PresentedProof | undefined,
): Promise<Reply | undefined> {
  const performing = op.perform(admitted, released, now, requestBytes);
  // An operation that answers at once costs no turn of the event loop.
  const step = performing instanceof Promise ? await performing : performing;
  if (step.kind === 'settle') {
    // A metered session's settled reply (an ack, a logout) is counted too.
    const quota = step.state?.quota;
    let settled = quota ? sessionWith(step.state!, { quota: charged(quota, requestBytes, step.reply.bytes.length, now, quota.tokenExpiresAt) }) : step.state;
    if (proof !== undefined && settled !== undefined && !settled.revoked && !hasSeen(settled.seal!, proof)) settled = sessionWith(settled, { seal: ctx.seals.after(settled.id, settled.seal!, proof, settled.gen) });
    if (settled !== undefined && settled !== loaded && !(await ctx.store.commitSession(settled, loaded.rev, released))) return undefined;
    if (settled?.revoked && !loaded.revoked) await ctx.sessionEnded(settled, now);
    return step.reply;
  }
  const { outcome } = step;
  // The next token is bound as this one was.
  const { token, hash, expiresAt } = mint(ctx, admitted.id, admitted.gen + 1, admitted.user, now, binding);
  // Token first: the replay copy at rest relies on it (session/replay.ts).
  // A sealed session's next token comes with its nonce: the token's at-rest hash (spec §12).
  const headers: Header[] = admitted.seal === null ? [['Token', token], ...outcome.headers] : [['Token', token], ['Seal-Nonce', hash], ...outcome.headers];
  if (outcome.error) headers.push(['Error', outcome.error]);
  const frame: ResponseFrame = { kind: 'response', status: outcome.status, reason: reasonFor(outcome.status), headers, body: outcome.body };
  const bytes = serializeFrame(frame, ctx.config.wire);
  // A metered session's counters are its code's: kept past its token's expiry, until folded.
  const quota = admitted.quota === null ? null : charged(admitted.quota, requestBytes, bytes.length, now, expiresAt);
  const rotated = rotate(admitted, {
    nextHash: hash,
    nextExpiresAt: quota === null ? expiresAt : keepUntil(quota, ctx.revokedRetentionMs),
    reply: outcome.handOver ? ctx.handOver!.atRest(replyAtRestOf(bytes, token)) : replyAtRestOf(bytes, token),
    tasks: outcome.tasks,
    meta: outcome.meta,
    quota,
    // The first use of the newest token: nothing was accepted under it before.
    seal: proof === undefined ? undefined : ctx.seals.after(admitted.id, admitted.seal!, proof, admitted.gen + 1, !loaded.acked && proof.gen === loaded.gen),
  });
  if (!(await ctx.store.commitSession(rotated, loaded.rev, released))) return undefined;
  if (outcome.error) note.outcome = outcome.error;
  return Reply.serialized(frame, bytes);
}

const NO_RECORDS: readonly TaskRecord[] = Object.freeze([]);

/** Tasks an ack released are in the store: count them and wake the runner. */
function taskReleased(ctx: DispatchContext, released: readonly TaskRecord[]): void {
  if (released.length === 0) return;
  ctx.metrics.task('released', released.length);
  ctx.tasks.notify();
}

function taskRecords(state: SessionState, specs: readonly TaskSpec[], now: number): TaskRecord[] {
  return specs.map((spec) => ({ ...spec, sessionId: state.id, user: state.user, status: 'released', releasedAt: now, expiresAt: null }));
}
