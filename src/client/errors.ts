import { ERRORS, type ErrorCode } from '../errors.ts';

/** A refusal from the server, typed by its code. */
export class RotorClientError extends Error {
  constructor(
    readonly code: ErrorCode | string,
    readonly status: number,
    message?: string,
  ) {
    super(message ?? (ERRORS as Record<string, { meaning: string }>)[code]?.meaning ?? code);
    this.name = 'RotorClientError';
  }
}
/** Someone presented a rotated-away token of this session: it is revoked; log in again. */
export class TokenReusedError extends RotorClientError {
  override name = 'TokenReusedError';
}
export class TokenExpiredError extends RotorClientError {
  override name = 'TokenExpiredError';
}
/** The session is over (logout, delete, reuse, or the server no longer knows it). */
export class SessionRevokedError extends RotorClientError {
  override name = 'SessionRevokedError';
}
export class AuthFailedError extends RotorClientError {
  override name = 'AuthFailedError';
}
/** The connection failed or timed out; the request may or may not have reached the server. */
export class TransportError extends Error {
  override name = 'TransportError';
}

export function errorFor(code: string, status: number, message?: string): RotorClientError {
  switch (code) {
    case 'ROTOR_E_TOKEN_REUSED':
      return new TokenReusedError(code, status, message);
    case 'ROTOR_E_TOKEN_EXPIRED':
      return new TokenExpiredError(code, status, message);
    case 'ROTOR_E_SESSION_REVOKED':
    case 'ROTOR_E_SESSION_UNKNOWN':
      return new SessionRevokedError(code, status, message);
    case 'ROTOR_E_AUTH_FAILED':
    case 'ROTOR_E_TOTP_REQUIRED':
      return new AuthFailedError(code, status, message);
    default:
      return new RotorClientError(code, status, message);
  }
}

/** Codes after which the client's token is worthless. */
export const SESSION_ENDING = new Set(['ROTOR_E_TOKEN_REUSED', 'ROTOR_E_TOKEN_EXPIRED', 'ROTOR_E_SESSION_REVOKED', 'ROTOR_E_SESSION_UNKNOWN', 'ROTOR_E_TOKEN_INVALID']);
