/**
 * The code's side of a connection: a code record changes only by compare-and-set, when a
 * connection opens (login) and when it ends (logout, delete, a limit, a reuse, a revocation, a
 * new login after its token expired). Its counters meanwhile live in the session (one write per
 * exchange, the rotation's own), and are folded into the code when the connection ends.
 */
import type { ErrorCode } from '../errors.ts';
import { sessionWith } from '../session/state.ts';
import type { SessionState } from '../session/types.ts';
import { changeRecord } from '../store/records.ts';
import type { Store } from '../store/types.ts';
import { endConnection, useOf } from './machine.ts';
import type { CodeRecord, EndReason, QuotaLimit, TemplateRecord } from './types.ts';

export const LIMIT_ERRORS: Readonly<Record<QuotaLimit, ErrorCode>> = Object.freeze({
  'bytes-in': 'ROTOR_E_QUOTA_BYTES_IN',
  'bytes-out': 'ROTOR_E_QUOTA_BYTES_OUT',
  'bytes-total': 'ROTOR_E_QUOTA_BYTES_TOTAL',
  'connection-time': 'ROTOR_E_QUOTA_CONNECTION_TIME',
  'usage-time': 'ROTOR_E_QUOTA_USAGE_TIME',
  'wall-time': 'ROTOR_E_QUOTA_WALL_TIME',
  age: 'ROTOR_E_QUOTA_AGE',
});

/** Why an ended session's connection ended, as its code records it. */
export function endReasonOf(state: SessionState): EndReason {
  if (state.quota?.endedBy) return state.quota.endedBy;
  switch (state.revoked?.reason) {
    case 'logout':
      return 'logout';
    case 'deleted':
      return 'deleted';
    case 'reuse':
      return 'reuse';
    case 'replaced':
      return 'replaced';
    default:
      return 'revoked';
  }
}

/**
 * Change code `id` by `change` (undefined: leave it), compare-and-set (changeRecord). Returns the
 * record as stored, or undefined when there is no such code.
 */
export function updateCode(store: Store, id: string, change: (code: CodeRecord) => CodeRecord | undefined): Promise<CodeRecord | undefined> {
  return changeRecord<CodeRecord>(store, 'code', id, (code) => (code === undefined ? undefined : change(code)));
}

/**
 * A connection of a code ended (the session is stored ended): fold its counters into the code,
 * once; then the session may be forgotten `retentionMs` after its end (until then it was kept).
 */
export async function foldConnection(store: Store, ended: SessionState, now: number, retentionMs: number): Promise<void> {
  const quota = ended.quota;
  if (quota === null) return;
  const template = (await store.loadRecord<TemplateRecord>('template', quota.template))?.value;
  const code = await updateCode(store, quota.code, (code) => (code.session === ended.id ? endConnection(code, template, useOf(quota), endReasonOf(ended), now) : undefined));
  if (code?.session !== ended.id) await forgetFolded(store, ended.id, retentionMs);
}

/** A folded connection's session: forgotten `retentionMs` after its end, like any revoked session. */
export async function forgetFolded(store: Store, sessionId: string, retentionMs: number): Promise<void> {
  const state = await store.loadSession(sessionId);
  if (!state?.revoked) return;
  const until = state.revoked.at + retentionMs;
  if (state.expiresAt !== until) await store.commitSession(sessionWith(state, { expiresAt: until }), state.rev, []);
}
