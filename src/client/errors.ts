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

/**
 * The server's TLS certificate was refused (an issuer not trusted, another name, expired…):
 * nothing was sent, and sending again cannot help, so the client does not retry. `code` is
 * node's: an X.509 verify code (`DEPTH_ZERO_SELF_SIGNED_CERT`, `CERT_HAS_EXPIRED`…) or
 * `ERR_TLS_CERT_ALTNAME_INVALID`.
 */
export class TlsCertificateError extends TransportError {
  override name = 'TlsCertificateError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** node's codes for a certificate that failed verification (node's tls docs, "X509 certificate error codes"). */
const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_CRL', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE', 'CRL_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID', 'CRL_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD', 'ERROR_IN_CRL_NEXT_UPDATE_FIELD', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED', 'INVALID_CA',
  'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** What a carrier's socket error becomes: a TlsCertificateError for a refused certificate, else a TransportError. */
export function asTransportError(err: Error): TransportError {
  if (err instanceof TransportError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && CERTIFICATE_CODES.has(code)) return new TlsCertificateError(`the server's TLS certificate was refused: ${err.message}`, code);
  return new TransportError(err.message);
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
