/**
 * Every error a client can see has a stable code, a status and a one-line meaning.
 * spec.md lists each of them; test/spec.test.ts checks that the two agree.
 *
 * Two families are kept apart:
 *  - protocol errors (`fatal: true`): the byte stream can no longer be trusted, so the server
 *    answers once with the code and closes the connection;
 *  - exchange errors: the frame was fine, the request was refused; the connection lives.
 * A bug in an application handler is neither: it is reported as ROTOR_E_HANDLER_FAILED and
 * logged with its stack, while the client only learns that the handler failed.
 */
export const ERRORS = {
  // --- frame / protocol (fatal: one error frame, then close) ---
  ROTOR_E_BAD_START_LINE: { status: 400, fatal: true, meaning: 'The start line is not `VERB /path ROTOR/1`.' },
  ROTOR_E_BAD_VERSION: { status: 505, fatal: true, meaning: 'The protocol version is not ROTOR/1.' },
  ROTOR_E_BAD_LINE_ENDING: { status: 400, fatal: true, meaning: 'A line ended in a bare LF or contained a bare CR; lines end in CRLF.' },
  ROTOR_E_LINE_TOO_LONG: { status: 431, fatal: true, meaning: 'A start or header line is longer than the line limit.' },
  ROTOR_E_BAD_HEADER: { status: 400, fatal: true, meaning: 'A header line has no colon, a bad name, or a control character in its value.' },
  ROTOR_E_DUPLICATE_HEADER: { status: 400, fatal: true, meaning: 'A header name appears twice (names compare case-insensitively).' },
  ROTOR_E_TOO_MANY_HEADERS: { status: 431, fatal: true, meaning: 'The frame has more header lines than the header-count limit.' },
  ROTOR_E_HEADERS_TOO_LARGE: { status: 431, fatal: true, meaning: 'The header block is larger than the header-bytes limit.' },
  ROTOR_E_BAD_LENGTH: { status: 400, fatal: true, meaning: 'BIN-Length is not 1 to 15 plain decimal digits.' },
  ROTOR_E_BODY_TOO_LARGE: { status: 413, fatal: true, meaning: 'BIN-Length is larger than the body limit (checked before any body byte is read).' },
  ROTOR_E_TRUNCATED: { status: 400, fatal: true, meaning: 'The peer closed the connection in the middle of a frame.' },
  ROTOR_E_HEADER_TIMEOUT: { status: 408, fatal: true, meaning: 'A header block was not complete within the header deadline.' },
  ROTOR_E_FRAME_TIMEOUT: { status: 408, fatal: true, meaning: 'A frame (headers and body) was not complete within the frame deadline.' },
  ROTOR_E_IDLE_TIMEOUT: { status: 408, fatal: true, meaning: 'The connection sent nothing for longer than the idle timeout.' },
  ROTOR_E_TOO_MANY_CONNECTIONS: { status: 503, fatal: true, meaning: 'The server is at its connection cap; try again later.' },
  ROTOR_E_TOO_MANY_PIPELINED: { status: 429, fatal: true, meaning: 'An HTTP connection pipelined more requests than it may hold unanswered (64 × `connection.maxInFlight`); the replies owed are sent, then the connection closes.' },
  ROTOR_E_SHUTTING_DOWN: { status: 503, fatal: true, meaning: 'The server is shutting down and accepts no new frames.' },

  // --- exchange errors (the connection lives) ---
  ROTOR_E_BAD_REQUEST: { status: 400, fatal: false, meaning: 'The frame is well formed but the request is not (a missing header, malformed JSON, a bad value).' },
  ROTOR_E_AUTH_FAILED: { status: 401, fatal: false, meaning: 'Unknown user, wrong password or wrong TOTP code (which one is not said).' },
  ROTOR_E_TOTP_REQUIRED: { status: 401, fatal: false, meaning: 'The password was right but this user also needs a TOTP code.' },
  ROTOR_E_TOKEN_MISSING: { status: 401, fatal: false, meaning: 'The request needs a Token header and has none.' },
  ROTOR_E_TOKEN_INVALID: { status: 401, fatal: false, meaning: 'The token is malformed, its MAC is wrong, or its key is unknown; the store was not consulted.' },
  ROTOR_E_TOKEN_EXPIRED: { status: 401, fatal: false, meaning: 'The token is past its lifetime.' },
  ROTOR_E_SESSION_UNKNOWN: { status: 401, fatal: false, meaning: 'The token is genuine but its session does not exist (purged, or never stored).' },
  ROTOR_E_CLIENT_MISMATCH: { status: 401, fatal: false, meaning: 'The token is bound to the client that logged in (its Client-Info, its address, or both: §2) and this request comes from another; nothing was read or changed.' },
  ROTOR_E_TOKEN_REUSED: { status: 401, fatal: false, meaning: 'A rotated-away token was presented again: the session and all its tokens are now revoked.' },
  ROTOR_E_SESSION_REVOKED: { status: 401, fatal: false, meaning: 'The session was revoked earlier (logout, delete, or a detected reuse).' },
  ROTOR_E_FORBIDDEN: { status: 403, fatal: false, meaning: 'The operation is disabled on this server or not allowed for this session.' },
  ROTOR_E_QUOTA_BYTES_IN: { status: 403, fatal: false, meaning: "This request would pass the access code's cap on bytes sent (§10): the session has ended." },
  ROTOR_E_QUOTA_BYTES_OUT: { status: 403, fatal: false, meaning: "The replies so far reached the access code's cap on bytes received (§10): the session has ended." },
  ROTOR_E_QUOTA_BYTES_TOTAL: { status: 403, fatal: false, meaning: "This request would pass, or the replies so far reached, the access code's cap on bytes in all (§10): the session has ended." },
  ROTOR_E_QUOTA_CONNECTION_TIME: { status: 403, fatal: false, meaning: 'This connection has lasted as long as its template allows (§10): the session has ended; a reusable code may log in again.' },
  ROTOR_E_QUOTA_USAGE_TIME: { status: 403, fatal: false, meaning: "The access code's in-use time is spent (§10): the session has ended." },
  ROTOR_E_QUOTA_WALL_TIME: { status: 403, fatal: false, meaning: 'The access code is past its time from first use (§10): the session has ended.' },
  ROTOR_E_QUOTA_AGE: { status: 403, fatal: false, meaning: 'The access code is past its age from issue (§10): the session has ended.' },
  ROTOR_E_CODE_INVALID: { status: 401, fatal: false, meaning: 'No access code like this one was issued (or it is not typed as one); counted like a wrong password (§10).' },
  ROTOR_E_CODE_SPENT: { status: 403, fatal: false, meaning: 'The access code is used up (its `Quota-Limit` says which cap, or `connection` for a single-use code): a new code is needed (§10).' },
  ROTOR_E_CODE_EXPIRED: { status: 403, fatal: false, meaning: 'The access code is past its time (`Quota-Limit: wall-time` or `age`): a new code is needed (§10).' },
  ROTOR_E_CODE_REVOKED: { status: 403, fatal: false, meaning: 'The access code, or its whole lot, was revoked by the operator (§10).' },
  ROTOR_E_CODE_IN_USE: { status: 409, fatal: false, meaning: "The access code's connection is live elsewhere: log out there, or log in again after the Wait-for seconds, when its token has expired (§10)." },
  ROTOR_E_NODE_NOT_ALLOWED: { status: 403, fatal: false, meaning: "The access code's template is not valid at this rotor node; use one of the nodes it names (§10)." },
  ROTOR_E_QUOTA_NEEDS_CODE: { status: 403, fatal: false, meaning: 'This server meters password logins and the user has no usable access code left, nor may one be made: log in with a new code (§10).' },
  ROTOR_E_HANDOVER_INVALID: { status: 401, fatal: false, meaning: 'The hand-over token is malformed or its signature wrong, its issuer or key id is not known here, or `Home` is not its issuer (§11); nothing was read or changed.' },
  ROTOR_E_HANDOVER_EXPIRED: { status: 401, fatal: false, meaning: 'The hand-over token is past its expiry (§11): ask the home server for a new one.' },
  ROTOR_E_HANDOVER_AUDIENCE: { status: 401, fatal: false, meaning: 'The hand-over token was made for another server (§11).' },
  ROTOR_E_HANDOVER_REUSED: { status: 401, fatal: false, meaning: 'The hand-over token was used for a login at this server already: each works once (§11).' },
  ROTOR_E_HANDOVER_REVOKED: { status: 401, fatal: false, meaning: 'The session the hand-over token was made from has ended (§11).' },
  ROTOR_E_APP_UNKNOWN: { status: 401, fatal: false, meaning: "No app with this id is registered here (§12); counted like a wrong password." },
  ROTOR_E_INSTANCE_UNKNOWN: { status: 403, fatal: false, meaning: "The app takes only listed instances and this one is not listed (§12)." },
  ROTOR_E_SEAL_INVALID: { status: 401, fatal: false, meaning: "The open's `Seal` is not the app key's signature of what it must sign, or its `Seal-Key` is unusable (§12); counted like a wrong password." },
  ROTOR_E_SEAL_NONCE_EXPIRED: { status: 401, fatal: false, meaning: "The open nonce is not this server's, or older than `seal.openNonceSeconds`: ask `GET /rotor/seal` for a new one (§12)." },
  ROTOR_E_SEAL_NONCE_USED: { status: 401, fatal: false, meaning: "The open nonce opened a session already: each opens one (§12)." },
  ROTOR_E_SEAL_PROOF_MISSING: { status: 401, fatal: false, meaning: "The token is a sealed session's and the request has no `Seal-Proof` (§12); nothing was changed." },
  ROTOR_E_SEAL_PROOF_WRONG: { status: 401, fatal: false, meaning: "The `Seal-Proof` is malformed or its MAC is not the session key's (§12); nothing was changed." },
  ROTOR_E_SEAL_NONCE_WRONG: { status: 401, fatal: false, meaning: "The `Seal-Proof` is over another nonce than the presented token's (§12); nothing was changed." },
  ROTOR_E_SEAL_BODY_CHANGED: { status: 401, fatal: false, meaning: "The `Seal-Proof`'s digest is not the body's (§12); nothing was changed." },
  ROTOR_E_SEAL_REPLAYED: { status: 401, fatal: false, meaning: "A sealed request already answered was sent again under a spent token, or an ack or a request under a token older than rotor remembers (§12); nothing was changed, the session lives." },
  ROTOR_E_NOT_FOUND: { status: 404, fatal: false, meaning: 'No handler serves this path.' },
  ROTOR_E_TASK_UNKNOWN: { status: 404, fatal: false, meaning: 'No task with this id belongs to this session.' },
  ROTOR_E_METHOD_NOT_ALLOWED: { status: 405, fatal: false, meaning: 'The path exists but not for this verb.' },
  ROTOR_E_POOL_UNKNOWN: { status: 404, fatal: false, meaning: 'No seat pool of that name (§9).' },
  ROTOR_E_CONFLICT: { status: 409, fatal: false, meaning: 'The session changed under the request too many times in a row; retry with the same token.' },
  ROTOR_E_QUEUE_FULL: { status: 429, fatal: false, meaning: "The seat pool's queue, or this user's share of it, is full; ask again after the Wait-for seconds (§9)." },
  ROTOR_E_RATE_LIMITED: { status: 429, fatal: false, meaning: 'Too many logins at once, or too many failed ones (§3 Logins); retry after the Wait-for seconds.' },
  ROTOR_E_HANDLER_FAILED: { status: 500, fatal: false, meaning: 'The application handler threw; the exchange still rotated the token.' },
  ROTOR_E_TASK_FAILED: { status: 500, fatal: false, meaning: 'The deferred task ran and failed; its error message is the body.' },
  ROTOR_E_INTERNAL: { status: 500, fatal: false, meaning: 'rotor itself failed (a bug); nothing was changed, retry with the same token.' },
  ROTOR_E_UNAVAILABLE: { status: 503, fatal: false, meaning: 'The store is unavailable; nothing was changed, retry with the same token.' },
  ROTOR_E_TASK_TIMED_OUT: { status: 504, fatal: false, meaning: 'The deferred task ran past its time and its handler was told to stop: its effect may or may not have happened.' },
} as const satisfies Record<string, { status: number; fatal: boolean; meaning: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** The reason phrase used on a response's start line for each status rotor sends. */
export const REASONS: Record<number, string> = {
  200: 'OK',
  202: 'Accepted',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Timeout',
  409: 'Conflict',
  413: 'Too Large',
  429: 'Too Many Requests',
  431: 'Headers Too Large',
  500: 'Internal Error',
  503: 'Unavailable',
  504: 'Timed Out',
  505: 'Version Not Supported',
};

export function reasonFor(status: number): string {
  return REASONS[status] ?? (status < 400 ? 'OK' : 'Error');
}

/** An error the protocol defines: it carries a stable code and its status. */
export class RotorError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly fatal: boolean;
  /** Header lines the error reply carries besides Error (Wait-for, Quota-Limit). */
  readonly headers: readonly (readonly [string, string])[];
  constructor(code: ErrorCode, message?: string, headers: readonly (readonly [string, string])[] = []) {
    super(message ?? ERRORS[code].meaning);
    this.headers = headers;
    this.name = 'RotorError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.fatal = ERRORS[code].fatal;
  }
}

export function isRotorError(err: unknown): err is RotorError {
  return err instanceof RotorError;
}
