/**
 * Quotas (spec §10, note 002): templates cap bytes and time, access codes are made from a
 * template in lots, and a session opened with a code carries the limits derived once at its
 * start plus the code's running counters, so an exchange only compares numbers.
 */

/** What a limit caps; also the suffix of its error code (bytes-in → ROTOR_E_QUOTA_BYTES_IN). */
export type QuotaLimit = 'bytes-in' | 'bytes-out' | 'bytes-total' | 'connection-time' | 'usage-time' | 'wall-time' | 'age';
export const QUOTA_LIMITS: readonly QuotaLimit[] = ['bytes-in', 'bytes-out', 'bytes-total', 'connection-time', 'usage-time', 'wall-time', 'age'];

/** A template as the operator defined it (`rotor template add`). Every cap is null when there is none. */
export interface TemplateRecord {
  /** 1–64 of A–Z a–z 0–9 _ . - */
  readonly name: string;
  /** Frame bytes the client may send, receive, and both together. */
  readonly maxBytesIn: number | null;
  readonly maxBytesOut: number | null;
  readonly maxBytesTotal: number | null;
  /** How long one connection (one session, login to end) may last. */
  readonly connectionMs: number | null;
  /** How much in-use time the code may spend over all its connections (spec §10: "in use"). */
  readonly usageMs: number | null;
  /** How long the code lasts from its first use, on the wall clock. */
  readonly wallMs: number | null;
  /** How long the code lasts from its issue, used or not. */
  readonly ageMs: number | null;
  /** A reusable code may connect again after a connection ended; a single-use code is spent then. */
  readonly reusable: boolean;
  /** The rotor nodes (`quotas.node`) where its codes are valid; empty: every node. */
  readonly nodes: readonly string[];
  readonly createdAt: number;
}

/** A batch of codes issued together (pre-paid cards). */
export interface LotRecord {
  /** 1–64 of A–Z a–z 0–9 _ . - */
  readonly id: string;
  readonly template: string;
  readonly comment: string;
  /** Who made it: the operator's name as given to `rotor lot issue --issuer` (default: the OS user). */
  readonly issuer: string;
  readonly issuedAt: number;
  /** The codes' ids (never the codes: those are printed once, at issue). */
  readonly codes: readonly string[];
  readonly revokedAt: number | null;
}

/** Counters of what a code has spent, over every connection it made. */
export interface QuotaUse {
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly usageMs: number;
}

/** Why a code's connection ended. */
export type EndReason = QuotaLimit | 'logout' | 'deleted' | 'reuse' | 'revoked' | 'replaced';

/** As stored: `unused` and `active` until something ends the code. */
export type CodeStatus = 'unused' | 'active' | 'exhausted' | 'expired' | 'revoked';

/** One access code, stored under its id (the SHA-256 of the code, never the code itself). */
export interface CodeRecord {
  readonly id: string;
  readonly lot: string;
  readonly template: string;
  readonly issuer: string;
  /** Who may use it: a user name (the login then needs that user's password too); '' for anyone holding the code. */
  readonly owner: string;
  readonly issuedAt: number;
  readonly status: CodeStatus;
  readonly firstUsedAt: number | null;
  /** What its ended connections spent; a live connection's own counters are in its session. */
  readonly used: QuotaUse;
  /** The live connection's session, if one is open. */
  readonly session: string | null;
  readonly connections: number;
  /** How its last connection ended, and when. */
  readonly lastEnd: { readonly at: number; readonly reason: EndReason } | null;
}

/**
 * What a session opened with a code carries (SessionState.quota): the limits derived once, at
 * login, from the template, the node's policy and what the code has spent, and the counters
 * the exchanges add to. Counters are the code's totals (what it had spent at login plus this
 * connection), so a cap is one comparison.
 */
export interface SessionQuota {
  readonly code: string;
  readonly template: string;
  readonly maxBytesIn: number | null;
  readonly maxBytesOut: number | null;
  readonly maxBytesTotal: number | null;
  readonly maxUsageMs: number | null;
  /** The earliest of the connection, wall-clock and age deadlines, and which one it is. */
  readonly deadline: number | null;
  readonly deadlineLimit: QuotaLimit | null;
  /** When the code itself ends on the clock (wall-clock or age), whatever this connection does; null: never. */
  readonly codeEndsAt: number | null;
  /** A gap between two exchanges counts as in use up to this long. */
  readonly idleGapMs: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly usageMs: number;
  /** When the last metered exchange was (the login, at first). */
  readonly lastAt: number;
  /** When the newest token expires: until then a second login with the code finds it in use. */
  readonly tokenExpiresAt: number | null;
  /** The limit that ended the session, once one has. */
  readonly endedBy: QuotaLimit | null;
}
