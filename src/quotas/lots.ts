/**
 * A lot as the operator sees it and ends it (`rotor lot show | revoke`), apart from the CLI so a
 * test can drive it on any store. Every change is compare-and-set: a server on the same store
 * may log in with, meter or end the lot's codes meanwhile.
 */
import { revoke } from '../session/machine.ts';
import type { SessionState } from '../session/types.ts';
import { changeRecord } from '../store/records.ts';
import type { Store } from '../store/types.ts';
import { endReasonOf, forgetFolded, updateCode } from './ledger.ts';
import { codeStatus, endConnection, useOf } from './machine.ts';
import type { CodeRecord, CodeStatus, EndReason, LotRecord, TemplateRecord } from './types.ts';

/** Codes read or changed at once: enough for a network store's round trips and LMDB's batched writes to overlap. */
const PARALLEL = 64;
/** Attempts of one compare-and-set loop (a lot's record, a session) before giving up. */
const RETRIES = 16;

export const CODE_STATUSES: readonly CodeStatus[] = ['unused', 'active', 'exhausted', 'expired', 'revoked'];

/** `work` on each of `items`, at most `width` at a time, results in their order. */
export async function eachAtOnce<T, R>(items: readonly T[], work: (item: T) => Promise<R>, width = PARALLEL): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return results;
}

export async function loadLot(store: Store, id: string): Promise<{ lot: LotRecord; rev: number }> {
  const entry = await store.loadRecord<LotRecord>('lot', id);
  if (!entry) throw new Error(`no lot ${id}`);
  return { lot: entry.value, rev: entry.rev };
}

/** A lot's codes as stored (a code removed since is left out), in the lot's order. */
export async function lotCodes(store: Store, lot: LotRecord): Promise<CodeRecord[]> {
  const codes = await eachAtOnce(lot.codes, async (id) => (await store.loadRecord<CodeRecord>('code', id))?.value);
  return codes.filter((code): code is CodeRecord => code !== undefined);
}

/** How many of `codes` are in each status at `now`, as a login would see them. */
export function countByStatus(codes: readonly CodeRecord[], template: TemplateRecord | undefined, now: number): Record<CodeStatus, number> {
  const counts = Object.fromEntries(CODE_STATUSES.map((status) => [status, 0])) as Record<CodeStatus, number>;
  for (const code of codes) counts[codeStatus(code, template, now)]++;
  return counts;
}

export interface LotRevocation {
  lot: LotRecord;
  /** Codes this call marked revoked (none already were). */
  codes: number;
  /** Live sessions of those codes this call ended. */
  sessions: number;
}

/**
 * Revoke lot `id` at `now`: its record first, then each
 * code — its live session, if any, is revoked in the store (`deleted`, remembered for
 * `retentionMs`), so its next exchange is refused, and its counters are folded into the code,
 * which is marked revoked: a login reads only its code, so a code is refused from the moment
 * its own mark is stored. Again on a revoked lot, it finishes what an interrupted call left.
 */
export async function revokeLot(store: Store, id: string, now: number, retentionMs: number): Promise<LotRevocation> {
  const lot = await markLotRevoked(store, id, now);
  const template = (await store.loadRecord<TemplateRecord>('template', lot.template))?.value;
  const done = await eachAtOnce(lot.codes, (code) => revokeCode(store, code, template, now, retentionMs));
  return { lot, codes: done.filter((d) => d.code).length, sessions: done.reduce((sum, d) => sum + d.sessions, 0) };
}

async function markLotRevoked(store: Store, id: string, now: number): Promise<LotRecord> {
  const lot = await changeRecord<LotRecord>(store, 'lot', id, (lot) => (lot && lot.revokedAt === null ? { ...lot, revokedAt: now } : undefined), RETRIES);
  if (!lot) throw new Error(`no lot ${id}`);
  return lot;
}

/**
 * One code: end the session it names, then fold that session and mark the code revoked in one
 * compare-and-set. A connection opened meanwhile (a login that read the lot before it was
 * revoked) is ended the same way, the next time round.
 */
async function revokeCode(store: Store, id: string, template: TemplateRecord | undefined, now: number, retentionMs: number): Promise<{ code: boolean; sessions: number }> {
  let sessions = 0;
  for (let attempt = 0; attempt < RETRIES; attempt++) {
    const code = (await store.loadRecord<CodeRecord>('code', id))?.value;
    if (!code) return { code: false, sessions };
    let ended: SessionState | undefined;
    let reason: EndReason = 'revoked';
    if (code.session !== null) {
      const result = await endSession(store, code.session, now, retentionMs);
      ended = result.state;
      if (result.revoked) sessions++;
      // Ended before (a logout whose fold did not happen): it keeps its own reason.
      else if (ended) reason = endReasonOf(ended);
    }
    let changed = false;
    const stored = await updateCode(store, id, (current) => {
      // Another connection than the one ended above: end that one first.
      if (current.session !== null && current.session !== code.session) return undefined;
      if (current.status === 'revoked' && current.session === null) return undefined;
      changed = current.status !== 'revoked';
      const folded = current.session === null ? current : ended?.quota ? endConnection(current, template, useOf(ended.quota), reason, now) : { ...current, session: null, lastEnd: { at: now, reason } };
      return { ...folded, status: 'revoked' };
    });
    if (!stored || stored.session === null) {
      if (code.session !== null) await forgetFolded(store, code.session, retentionMs);
      return { code: changed, sessions };
    }
  }
  throw new Error(`code ${id} kept opening connections under ${RETRIES} attempts in a row`);
}

/** Revoke session `id` unless it is already: the session as stored then (undefined: gone), and whether this call revoked it. */
export async function endSession(store: Store, id: string, now: number, retentionMs: number): Promise<{ state: SessionState | undefined; revoked: boolean }> {
  for (let attempt = 0; attempt < RETRIES; attempt++) {
    const state = await store.loadSession(id);
    if (!state || state.revoked) return { state, revoked: false };
    const ended = revoke(state, 'deleted', now, now + retentionMs).state;
    if (await store.commitSession(ended, state.rev, [])) return { state: ended, revoked: true };
  }
  throw new Error(`session ${id} changed under ${RETRIES} attempts in a row`);
}
