/**
 * Hand-over tokens (spec §11): `h1.<key id>.<claims>.<signature>`, `<claims>` base64url of a
 * protobuf `rotor.HandOverClaims`, `<signature>` base64url of the issuer's Ed25519 signature
 * over `h1.<key id>.<claims>`. Parsed strictly — length caps, canonical base64url only, claims
 * that re-encode to the very bytes sent (no unknown fields, no second spelling) — so one token
 * has one spelling, and a peer checks it with public keys alone, offline.
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { RotorError } from '../errors.ts';
import { canonicalBase64url } from '../base64url.ts';

// The same two levels up from src/handover/ and from dist/handover/.
const proto = protobuf.loadSync(fileURLToPath(new URL('../../protocol/rotor.proto', import.meta.url)));
const ClaimsType = proto.lookupType('rotor.HandOverClaims');

export const FORMAT = 'h1';
/** A hand-over token lives at most this long (and never past its parent token's expiry). */
export const MAX_LIFETIME_SECONDS = 15 * 60;
/** Longer than any token rotor mints (a 256-byte user, 64-character names): refused unread. */
export const MAX_TOKEN_CHARS = 1024;
const MAX_CLAIMS_CHARS = 800;
const SIGNATURE_CHARS = 86; // 64 bytes
/** Key ids as the MAC keys' (spec §11). */
export const KEY_ID = /^[a-z0-9]{1,16}$/;
/** Server names (`self`, a peer's `name`): what a token's issuer and audience may be. */
export const SERVER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const SESSION_BYTES = 16;
const NONCE_BYTES = 16;
const MAX_USER_BYTES = 256;

export interface HandOverClaims {
  issuer: string;
  audience: string;
  /** The parent session's id (base64url of its 16 bytes, as rotor names sessions). */
  parent: string;
  user: string;
  /** unix seconds */
  issued: number;
  /** unix seconds */
  expires: number;
  /** base64url of 16 random bytes. */
  nonce: string;
}

/** A token whose form is right, before its signature is checked. */
export interface ParsedHandOver {
  keyId: string;
  claims: HandOverClaims;
  /** `h1.<key id>.<claims>`: what the signature covers. */
  signed: string;
  signature: Buffer;
}

function encodeClaims(claims: HandOverClaims): Buffer {
  const bytes = ClaimsType.encode({
    issuer: claims.issuer,
    audience: claims.audience,
    parent: Buffer.from(claims.parent, 'base64url'),
    user: claims.user,
    issued: claims.issued,
    expires: claims.expires,
    nonce: Buffer.from(claims.nonce, 'base64url'),
  }).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** `h1.<key id>.<claims>`, the part a signature covers (and the part a store may keep: rest.ts). */
export function unsignedHandOver(keyId: string, claims: HandOverClaims): string {
  return `${FORMAT}.${keyId}.${encodeClaims(claims).toString('base64url')}`;
}

/** Sign `h1.<key id>.<claims>`: Ed25519 is deterministic, so the same claims always give the same token. */
export function signHandOver(unsigned: string, privateKey: KeyObject): string {
  return `${unsigned}.${sign(null, Buffer.from(unsigned, 'latin1'), privateKey).toString('base64url')}`;
}

export function mintHandOver(keyId: string, privateKey: KeyObject, claims: HandOverClaims): string {
  return signHandOver(unsignedHandOver(keyId, claims), privateKey);
}

const invalid = (why: string): RotorError => new RotorError('ROTOR_E_HANDOVER_INVALID', `hand-over token: ${why}`);

/** base64url bytes, only in their one canonical spelling. */
export const canonical = (text: string): Buffer | undefined => canonicalBase64url(text);

/** The claims of `h1.<key id>.<claims>`; throws ROTOR_E_HANDOVER_INVALID for anything but a well-formed token. */
export function parseUnsigned(unsigned: string): { keyId: string; claims: HandOverClaims } {
  const parts = unsigned.split('.');
  if (parts.length !== 3 || parts[0] !== FORMAT) throw invalid('not h1.<key id>.<claims>');
  const [, keyId, claimsText] = parts;
  if (!KEY_ID.test(keyId)) throw invalid('bad key id');
  if (claimsText.length > MAX_CLAIMS_CHARS) throw invalid('claims too long');
  const bytes = canonical(claimsText);
  if (!bytes) throw invalid('claims are not base64url');
  let claims: HandOverClaims;
  try {
    const decoded = ClaimsType.toObject(ClaimsType.decode(bytes), { longs: Number, bytes: Buffer, defaults: true }) as {
      issuer: string;
      audience: string;
      parent: Buffer;
      user: string;
      issued: number;
      expires: number;
      nonce: Buffer;
    };
    claims = {
      issuer: decoded.issuer,
      audience: decoded.audience,
      parent: decoded.parent.toString('base64url'),
      user: decoded.user,
      issued: decoded.issued,
      expires: decoded.expires,
      nonce: decoded.nonce.toString('base64url'),
    };
    if (decoded.parent.length !== SESSION_BYTES || decoded.nonce.length !== NONCE_BYTES) throw new Error('bad lengths');
  } catch {
    throw invalid('claims do not decode');
  }
  if (!SERVER_NAME.test(claims.issuer) || !SERVER_NAME.test(claims.audience)) throw invalid('bad issuer or audience');
  if (claims.user === '' || Buffer.byteLength(claims.user) > MAX_USER_BYTES) throw invalid('bad user');
  if (!(claims.expires > claims.issued) || claims.expires - claims.issued > MAX_LIFETIME_SECONDS) throw invalid('lifetime out of range');
  // One spelling of one set of claims: unknown fields, defaults spelled out, loose varints are not it.
  if (!encodeClaims(claims).equals(bytes)) throw invalid('claims not in canonical form');
  return { keyId, claims };
}

/** A token's parts, strictly; throws ROTOR_E_HANDOVER_INVALID. The signature is not checked here. */
export function parseHandOver(token: string): ParsedHandOver {
  if (token.length > MAX_TOKEN_CHARS) throw invalid('too long');
  const lastDot = token.lastIndexOf('.');
  if (lastDot < 0) throw invalid('no signature');
  const signed = token.slice(0, lastDot);
  const signatureText = token.slice(lastDot + 1);
  if (signatureText.length !== SIGNATURE_CHARS) throw invalid('bad signature length');
  const signature = canonical(signatureText);
  if (!signature) throw invalid('signature is not base64url');
  return { ...parseUnsigned(signed), signed, signature };
}

/** Whether `publicKey` signed the token. */
export function signedBy(parsed: ParsedHandOver, publicKey: KeyObject): boolean {
  return verify(null, Buffer.from(parsed.signed, 'latin1'), publicKey, parsed.signature);
}
