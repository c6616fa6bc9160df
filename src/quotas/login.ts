/**
 * Logging in with an access code (spec §10), and note 002's login flow for metered password
 * logins: authenticate; reuse the user's own usable reusable code; else make one if policy
 * allows; else refuse with a code that says what to do.
 *
 * One connection per code at a time: a code's record names its live session, and is changed
 * only by compare-and-set, under a per-code lock in this process — two logins with one code on
 * two nodes open one connection, and the other gets ROTOR_E_CODE_IN_USE.
 */
import { RotorError } from '../errors.ts';
import { revoke } from '../session/machine.ts';
import { replyFromRest } from '../session/replay.ts';
import type { SessionState } from '../session/types.ts';
import { changeRecord, RecordConflict } from '../store/records.ts';
import { Reply } from '../wire/index.ts';
import type { DispatchContext, Note } from '../server/context.ts';
import { openSession } from '../server/operations/open-session.ts';
import { codeId, normalizeCode } from './codes.ts';
import { codeStatus, deriveQuota, isSpendingCap, limitReached, spentCap } from './machine.ts';
import { freshCode } from './templates.ts';
import type { CodeRecord, QuotaLimit, TemplateRecord } from './types.ts';

/** A user's codes (the `owner` catalog record): those issued to them, and how many logins made. */
export interface OwnerRecord {
  readonly codes: readonly string[];
  readonly minted: number;
}

/** What a login brings besides the code: who it authenticated as ('' for a code alone), its metadata and binding. */
export interface CodeLogin {
  user: string;
  meta: Record<string, unknown>;
  binding: string | undefined;
  note: Note;
}

/** Log in with a code as typed. ROTOR_E_CODE_INVALID (the caller counts it as a failed login) when no such code was issued to this login. */
export function loginWithCode(ctx: DispatchContext, typed: string, login: CodeLogin): Promise<Reply> {
  const normalized = normalizeCode(typed);
  if (normalized === undefined) throw new RotorError('ROTOR_E_CODE_INVALID');
  return openConnection(ctx, codeId(normalized), login);
}

/** A metered password login of `login.user` (the password is checked): one of their codes, or a new one. One at a time per user in this process. */
export function meteredPasswordLogin(ctx: DispatchContext, login: CodeLogin): Promise<Reply> {
  return ctx.locks.run(`\0owner\0${login.user}`, () => meteredPasswordLoginLocked(ctx, login));
}

async function meteredPasswordLoginLocked(ctx: DispatchContext, login: CodeLogin): Promise<Reply> {
  const { store } = ctx;
  const owned = await store.loadRecord<OwnerRecord>('owner', login.user);
  for (const id of owned?.value.codes ?? []) {
    try {
      return await openConnection(ctx, id, login);
    } catch (err) {
      // Spent, expired, revoked: the next code may serve. One in use is the answer (spec §10).
      if (!(err instanceof RotorError) || err.code === 'ROTOR_E_CODE_IN_USE' || err.code === 'ROTOR_E_UNAVAILABLE' || err.code === 'ROTOR_E_CONFLICT') throw err;
    }
  }
  const { passwordTemplate, mintPerUser } = ctx.config.quotas;
  const template = (await store.loadRecord<TemplateRecord>('template', passwordTemplate))?.value;
  if (!template) {
    ctx.log.error({ template: passwordTemplate }, 'quotas.passwordTemplate names no template: metered password logins are refused');
    throw new RotorError('ROTOR_E_QUOTA_NEEDS_CODE');
  }
  const id = `login-${ctx.random(16).toString('base64url')}`;
  // The mint is reserved against the user's allowance by compare-and-set before the code exists:
  // logins racing on other nodes cannot both pass the check (a reservation whose code was never
  // made is an id that opens nothing).
  if (!(await reserveMint(ctx, login.user, id, mintPerUser))) throw new RotorError('ROTOR_E_QUOTA_NEEDS_CODE');
  const code = freshCode({ id, lot: '', template: template.name, issuer: 'login', owner: login.user, issuedAt: ctx.now() });
  if (!(await store.createRecords('code', [{ id, value: code }]))) throw new Error('a fresh code id exists');
  return openConnection(ctx, id, login);
}

/** Add code `id` to what logins made for `user`, if that stays within `limit`; false when it would not. */
async function reserveMint(ctx: DispatchContext, user: string, id: string, limit: number): Promise<boolean> {
  const reserve = (owner: OwnerRecord | undefined): OwnerRecord | undefined =>
    (owner?.minted ?? 0) >= limit ? undefined : { codes: [...(owner?.codes ?? []), id], minted: (owner?.minted ?? 0) + 1 };
  try {
    return (await changeRecord(ctx.store, 'owner', user, reserve, ctx.config.session.maxCommitRetries))?.codes.includes(id) ?? false;
  } catch (err) {
    if (err instanceof RecordConflict) throw new RotorError('ROTOR_E_CONFLICT');
    throw err;
  }
}

/** Add `ids` (a lot issued to `user`) to `user`'s codes; false when the record kept changing under every attempt. */
export async function addOwnedCodes(ctx: Pick<DispatchContext, 'store'>, user: string, ids: readonly string[]): Promise<boolean> {
  try {
    await changeRecord<OwnerRecord>(ctx.store, 'owner', user, (owner) => ({ codes: [...(owner?.codes ?? []), ...ids], minted: owner?.minted ?? 0 }));
    return true;
  } catch (err) {
    if (err instanceof RecordConflict) return false;
    throw err;
  }
}

function openConnection(ctx: DispatchContext, id: string, login: CodeLogin): Promise<Reply> {
  return ctx.locks.run(`\0code\0${id}`, () => openConnectionLocked(ctx, id, login));
}

async function openConnectionLocked(ctx: DispatchContext, id: string, login: CodeLogin): Promise<Reply> {
  const { store } = ctx;
  for (let attempt = 0; attempt < ctx.config.session.maxCommitRetries; attempt++) {
    const entry = await store.loadRecord<CodeRecord>('code', id);
    // A code issued to someone else is no code for this login: the same answer as none at all.
    if (!entry || (entry.value.owner !== '' && entry.value.owner !== login.user)) throw new RotorError('ROTOR_E_CODE_INVALID');
    const code = entry.value;
    // A revoked lot is not read here: revoking it marks each of its codes (src/quotas/lots.ts), and a lot record holds every code id — too big to load per login.
    const template = (await store.loadRecord<TemplateRecord>('template', code.template))?.value;
    const now = ctx.now();
    if (!template) throw new RotorError('ROTOR_E_CODE_REVOKED');
    if (template.nodes.length > 0 && !template.nodes.includes(ctx.config.quotas.node)) throw new RotorError('ROTOR_E_NODE_NOT_ALLOWED');
    refuseEnded(code, template, now);
    if (code.session !== null) {
      const answer = await settleEarlier(ctx, code, now, login.note);
      if (answer) return answer;
      continue;
    }
    const quota = deriveQuota(template, code, now, ctx.config.quotas.idleGapSeconds * 1000, null);
    const reached = limitReached(quota, now);
    if (reached) throw limitRefusal(reached);
    const user = code.owner || `code:${id.slice(0, 12)}`;
    login.note.user = user;
    const opened = await openSession(ctx, user, login.meta, undefined, login.binding, { quota, keepReply: true, headers: [['Quota-Template', template.name]] });
    const next: CodeRecord = { ...code, status: 'active', firstUsedAt: code.firstUsedAt ?? now, session: opened.state.id, connections: code.connections + 1 };
    if (await store.commitRecord('code', id, next, entry.rev)) {
      login.note.session = opened.state.id;
      return opened.reply;
    }
    // Another node opened a connection of this code meanwhile: this session must never work.
    await store.commitSession(revoke(opened.state, 'replaced', now, now + ctx.revokedRetentionMs).state, 0, []);
  }
  throw new RotorError('ROTOR_E_CONFLICT');
}

/**
 * The code names a live session. Its login sent again gets that login's reply while the first
 * token is unused; a connection still in its token's lifetime is in use; one past it is over —
 * ended and folded into the code here, and undefined tells the caller to read the code again.
 */
async function settleEarlier(ctx: DispatchContext, code: CodeRecord, now: number, note: Note): Promise<Reply | undefined> {
  const earlier = await ctx.store.loadSession(code.session!);
  if (!earlier || earlier.quota === null) {
    // Gone: a metered session is kept until it is folded, or its code has ended on the clock
    // (then the code is refused before this). Only a store that lost data gets here.
    ctx.log.error({ session: code.session }, 'the session of an access code is gone before it was folded into its code: what it spent is lost');
    await clearSession(ctx, code, now);
    return undefined;
  }
  if (!earlier.revoked) {
    const inUseUntil = earlier.quota.tokenExpiresAt ?? earlier.quota.lastAt + NEVER_EXPIRING_IN_USE_MS;
    if (inUseUntil > now) return sameLoginAgain(ctx, earlier, note) ?? inUse(inUseUntil, now);
    const ended = revoke(earlier, 'replaced', now, now + ctx.revokedRetentionMs).state;
    if (!(await ctx.store.commitSession(ended, earlier.rev, []))) return undefined;
    await ctx.sessionEnded(ended, now);
    return undefined;
  }
  // Ended, but its fold did not happen (it failed, or the node stopped): do it now. Failing
  // again, the login waits for the store rather than forget what the connection spent.
  await ctx.sessionEnded(earlier, now);
  if ((await ctx.store.loadRecord<CodeRecord>('code', code.id))?.value.session === earlier.id) throw new RotorError('ROTOR_E_UNAVAILABLE', 'folding the earlier connection into its code failed');
  return undefined;
}

/** A connection whose tokens never expire counts as in use until this long after its last exchange. */
const NEVER_EXPIRING_IN_USE_MS = 3_600_000;

function sameLoginAgain(ctx: DispatchContext, earlier: SessionState, note: Note): Reply | undefined {
  if (earlier.gen !== 1 || earlier.acked || !earlier.prev || earlier.prev.hash !== '') return undefined;
  const bytes = replyFromRest(ctx.keys, earlier.prev.reply, earlier.tokenHash);
  if (!bytes) return undefined;
  note.outcome = 'replay';
  note.session = earlier.id;
  return Reply.fromBytes(bytes);
}

function inUse(until: number, now: number): never {
  const seconds = Math.max(1, Math.ceil((until - now) / 1000));
  throw new RotorError('ROTOR_E_CODE_IN_USE', undefined, [['Wait-for', String(seconds)]]);
}

async function clearSession(ctx: DispatchContext, code: CodeRecord, now: number): Promise<void> {
  const entry = await ctx.store.loadRecord<CodeRecord>('code', code.id);
  if (!entry || entry.value.session !== code.session) return;
  await ctx.store.commitRecord('code', code.id, { ...entry.value, session: null, lastEnd: { at: now, reason: 'replaced' } }, entry.rev);
}

/** Refuse a code that has ended, saying how. */
function refuseEnded(code: CodeRecord, template: TemplateRecord, now: number): void {
  const status = codeStatus(code, template, now);
  if (status === 'revoked') throw new RotorError('ROTOR_E_CODE_REVOKED');
  if (status === 'expired') throw limitRefusal(template.ageMs !== null && now >= code.issuedAt + template.ageMs ? 'age' : 'wall-time');
  if (status === 'exhausted') {
    const reason = code.lastEnd?.reason;
    throw new RotorError('ROTOR_E_CODE_SPENT', undefined, [['Quota-Limit', (isSpendingCap(reason) ? reason : spentCap(code, template)) ?? 'connection']]);
  }
}

function limitRefusal(limit: QuotaLimit): RotorError {
  const expired = limit === 'wall-time' || limit === 'age';
  return new RotorError(expired ? 'ROTOR_E_CODE_EXPIRED' : 'ROTOR_E_CODE_SPENT', undefined, [['Quota-Limit', limit]]);
}
