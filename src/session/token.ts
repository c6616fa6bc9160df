import * as crypto from 'node:crypto';
import { createHash, createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { RotorError } from '../errors.ts';
import type { RandomSource } from './random.ts';

// The same two levels up from src/session/ and from dist/session/; a file path, not a URL's
// (percent-encoded) pathname, so a checkout under a path with a space or non-ASCII works.
const proto = protobuf.loadSync(fileURLToPath(new URL('../../protocol/rotor.proto', import.meta.url)));
const TokenClaimsType = proto.lookupType('rotor.TokenClaims');

export interface TokenClaims {
  /** base64url of the 16 session bytes. */
  session: string;
  generation: number;
  /** unix seconds */
  issued: number;
  /** whole minutes, -1 = never */
  ttlMinutes: number;
  user: string;
  /** base64url of the 8-byte binding to a client (spec §2), when the server binds tokens. */
  binding?: string | undefined;
}

export interface MacKey {
  /** Short id carried in every token so keys can be rotated and retired. */
  id: string;
  secret: Buffer;
}

const KEY_ID = /^[a-z0-9]{1,16}$/;
const MAC_BYTES = 16;
const MAX_TOKEN_CHARS = 512;

/**
 * The MAC keys a server holds: signs new tokens with one, accepts tokens of any. Built with the
 * signing key first; `replace` swaps the whole ring in place (the key ring source does, as the
 * store's ring changes: spec §11), so every part of a server holding this object sees the new
 * keys at once. The hot path stays one Map lookup (`secret`) and one field read (`signing`).
 */
export class KeyRing {
  private current!: MacKey;
  private byId = new Map<string, Buffer>();
  constructor(keys: readonly MacKey[]) {
    if (keys.length === 0) throw new Error('a key ring needs at least one key');
    this.replace(keys, keys[0].id);
  }
  /** The key new tokens are signed with. */
  get signing(): MacKey {
    return this.current;
  }
  secret(id: string): Buffer | undefined {
    return this.byId.get(id);
  }
  /** The ids of the keys whose tokens are accepted. */
  get ids(): string[] {
    return [...this.byId.keys()];
  }
  /**
   * From now on sign with `signingId` and accept exactly `keys`. Checked whole before anything
   * changes: a bad ring leaves this one as it was. A key whose secret is unchanged keeps its
   * Buffer, and with it the HMAC state made for it.
   */
  replace(keys: readonly MacKey[], signingId: string): void {
    const byId = new Map<string, Buffer>();
    for (const key of keys) {
      if (!KEY_ID.test(key.id)) throw new Error(`bad key id ${JSON.stringify(key.id)}`);
      if (key.secret.length < 32) throw new Error(`key ${key.id} is shorter than 32 bytes`);
      if (byId.has(key.id)) throw new Error(`key ${key.id} twice in a ring`);
      const held = this.byId.get(key.id);
      byId.set(key.id, held !== undefined && held.equals(key.secret) ? held : key.secret);
    }
    const signing = byId.get(signingId);
    if (signing === undefined) throw new Error(`the signing key ${signingId} is not in the ring`);
    this.byId = byId;
    this.current = { id: signingId, secret: signing };
  }
  static generate(random: RandomSource, id = 'k1'): KeyRing {
    return new KeyRing([{ id, secret: random(32) }]);
  }
}

/**
 * SHA-256 in one call where Node has it (20.12+): no Hash object per call, which is most of
 * the cost of hashing a 100-byte token. The digest comes back as a latin1 string (one char per
 * byte): far cheaper than a Buffer, and copied back into bytes with no decoding, unlike hex.
 */
const sha256Latin1: ((data: string | Buffer) => string) | undefined =
  typeof crypto.hash === 'function' ? (data) => crypto.hash('sha256', data, 'binary') : undefined;

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const SEXTET = new Map([...BASE64URL].map((c, i) => [c, i]));

/**
 * base64url of the first 16 bytes of a digest, from the base64url of the whole digest: the first
 * 21 characters are the same, and the 22nd keeps the top two bits of its sextet (the last two
 * bits of byte 15; base64 pads the rest with zeros). No Buffer on the way.
 */
function first16Base64url(whole: string): string {
  return whole.slice(0, 21) + BASE64URL[SEXTET.get(whole[21])! & 0b110000];
}

const BLOCK = 64;
/** Room for the longest string one-shot HMAC handles: a token's signed part (≤ 512 chars) in UTF-8 and then some. */
const SCRATCH_BYTES = 4 * 1024;

/**
 * HMAC-SHA256 (RFC 2104) from two one-shot SHA-256 calls over buffers that already hold the
 * padded key — the same bytes createHmac gives, at a fraction of its per-call setup. One pair
 * of buffers per key secret, made on first use (a key's secret never changes once in a ring).
 */
class OneShotHmac {
  private readonly inner: Buffer;
  private readonly outer: Buffer;
  constructor(
    secret: Buffer,
    private readonly sha256: (data: Buffer) => string,
  ) {
    const key = Buffer.alloc(BLOCK);
    if (secret.length > BLOCK) createHash('sha256').update(secret).digest().copy(key);
    else secret.copy(key);
    this.inner = Buffer.allocUnsafe(BLOCK + SCRATCH_BYTES);
    this.outer = Buffer.allocUnsafe(BLOCK + 32);
    for (let i = 0; i < BLOCK; i++) {
      this.inner[i] = key[i] ^ 0x36;
      this.outer[i] = key[i] ^ 0x5c;
    }
  }
  /** The whole HMAC-SHA256 in base64url (43 characters), or undefined when `message` may not fit the scratch buffer. */
  digest(message: string): string | undefined {
    if (message.length * 3 > SCRATCH_BYTES) return undefined;
    const length = this.inner.write(message, BLOCK, 'utf8');
    this.outer.write(this.sha256(this.inner.subarray(0, BLOCK + length)), BLOCK, 'latin1');
    return crypto.hash('sha256', this.outer, 'base64url');
  }
}

const oneShot = new WeakMap<Buffer, OneShotHmac>();

/** HMAC-SHA256 of `signed`, base64url, all 256 bits. */
function hmacDigest(secret: Buffer, signed: string): string {
  if (sha256Latin1) {
    let hmac = oneShot.get(secret);
    if (!hmac) oneShot.set(secret, (hmac = new OneShotHmac(secret, sha256Latin1)));
    const digest = hmac.digest(signed);
    if (digest !== undefined) return digest;
  }
  return createHmac('sha256', secret).update(signed).digest('base64url');
}

/** The token MAC of `signed`: the first MAC_BYTES of HMAC-SHA256, base64url. */
export function mac(secret: Buffer, signed: string): string {
  return first16Base64url(hmacDigest(secret, signed));
}

/**
 * A token's MAC and what a store keeps instead of the token, from one HMAC: the MAC is the
 * digest's first 128 bits, the at-rest hash its bits 132–255 (base64url characters 22–42).
 * Disjoint bits of one PRF output: the hash says nothing about the MAC, so a copy of the store
 * holds nothing a token can be rebuilt from, and each exchange needs one keyed hash per token
 * instead of an HMAC and a SHA-256.
 */
function macAndHash(secret: Buffer, signed: string): { mac: string; hash: string } {
  const digest = hmacDigest(secret, signed);
  return { mac: first16Base64url(digest), hash: digest.slice(22) };
}

/** A token and its at-rest hash. */
export interface HashedToken {
  token: string;
  hash: string;
}

/**
 * A token: `<key id>.<claims, base64url protobuf>.<MAC, base64url>`. The MAC (HMAC-SHA256,
 * 128 bits) covers the key id and the claims, so a forged or altered token is refused before
 * any store lookup.
 */
export function mintToken(keys: KeyRing, claims: TokenClaims, random: RandomSource): string {
  return mintHashedToken(keys, claims, random).token;
}

/** mintToken, with the hash the session keeps for the new token. */
export function mintHashedToken(keys: KeyRing, claims: TokenClaims, random: RandomSource): HashedToken {
  const message: Record<string, unknown> = {
    session: Buffer.from(claims.session, 'base64url'),
    generation: claims.generation,
    issued: claims.issued,
    ttlMinutes: claims.ttlMinutes,
    user: claims.user,
    nonce: random(16),
  };
  // Left out when there is none: the claims of an unbound token are as before.
  if (claims.binding) message.binding = Buffer.from(claims.binding, 'base64url');
  const bytes = TokenClaimsType.encode(message).finish();
  // protobufjs hands back a Buffer under Node; a Uint8Array is wrapped, not copied.
  const claimsBytes = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const signed = `${keys.signing.id}.${claimsBytes.toString('base64url')}`;
  const { mac, hash } = macAndHash(keys.signing.secret, signed);
  return { token: `${signed}.${mac}`, hash };
}

/** A verified token's claims, and the hash a session keeps for it. */
export interface VerifiedToken {
  claims: TokenClaims;
  hash: string;
}

/** Check a token's form and MAC and decode its claims; throws ROTOR_E_TOKEN_INVALID. */
export function verifyToken(keys: KeyRing, token: string): TokenClaims {
  return verifyHashedToken(keys, token).claims;
}

/** verifyToken, with the hash a session keeps for this token. */
export function verifyHashedToken(keys: KeyRing, token: string): VerifiedToken {
  if (token.length > MAX_TOKEN_CHARS) throw new RotorError('ROTOR_E_TOKEN_INVALID');
  const lastDot = token.lastIndexOf('.');
  const firstDot = token.indexOf('.');
  if (firstDot <= 0 || lastDot === firstDot) throw new RotorError('ROTOR_E_TOKEN_INVALID');
  const secret = keys.secret(token.slice(0, firstDot));
  if (!secret) throw new RotorError('ROTOR_E_TOKEN_INVALID');
  const signed = token.slice(0, lastDot);
  // The MAC is compared as text, in constant time, against its canonical base64url spelling:
  // Node's base64url decoder skips foreign characters and the last character's unused bits, so
  // comparing decoded bytes would accept many spellings of one MAC (one token, one string).
  const expected = macAndHash(secret, signed);
  if (!sameText(token, lastDot + 1, expected.mac)) throw new RotorError('ROTOR_E_TOKEN_INVALID');
  try {
    // decode alone, no toObject: absent fields read their defaults from the message prototype,
    // and the uint64s are converted as toObject({longs: Number}) would.
    const decoded = TokenClaimsType.decode(Buffer.from(signed.slice(firstDot + 1), 'base64url')) as unknown as DecodedClaims;
    const session = decoded.session;
    const generation = toNumber(decoded.generation);
    if (session.length !== 16 || generation < 1) throw new Error('bad claims');
    const claims: TokenClaims = {
      session: Buffer.from(session.buffer, session.byteOffset, session.length).toString('base64url'),
      generation,
      issued: toNumber(decoded.issued),
      ttlMinutes: decoded.ttlMinutes,
      user: decoded.user,
    };
    if (decoded.binding.length > 0) claims.binding = Buffer.from(decoded.binding.buffer, decoded.binding.byteOffset, decoded.binding.length).toString('base64url');
    return { claims, hash: expected.hash };
  } catch {
    throw new RotorError('ROTOR_E_TOKEN_INVALID');
  }
}

/**
 * Whether `text` from `start` on is `expected`, in time that depends on the lengths only (the
 * MAC's characters are compared without an early exit; no Buffers made for timingSafeEqual).
 */
export function sameText(text: string, start: number, expected: string): boolean {
  if (text.length - start !== expected.length) return false;
  let difference = 0;
  for (let i = 0; i < expected.length; i++) difference |= text.charCodeAt(start + i) ^ expected.charCodeAt(i);
  return difference === 0;
}

/** What TokenClaimsType.decode returns: uint64s as Long (or number), bytes as Uint8Array or Buffer. */
interface DecodedClaims {
  session: Uint8Array;
  generation: number | protobuf.Long;
  issued: number | protobuf.Long;
  ttlMinutes: number;
  user: string;
  binding: Uint8Array;
}

/** An unsigned 64-bit value as a number, exactly as toObject's `longs: Number` converts it. */
function toNumber(value: number | protobuf.Long): number {
  return typeof value === 'number' ? value : new protobuf.util.LongBits(value.low >>> 0, value.high >>> 0).toNumber(true);
}

/**
 * A token without its MAC: the part a store may keep. It names the session and generation but
 * is worth nothing without the server key, which the store never holds.
 */
export function unsignedPart(token: string): string {
  const lastDot = token.lastIndexOf('.');
  if (lastDot <= 0) throw new Error('not a token');
  return token.slice(0, lastDot);
}

/** The token `unsigned` was cut from, MAC re-made with the key it names, and its hash; undefined when that key is gone. */
export function resign(keys: KeyRing, unsigned: string): HashedToken | undefined {
  const secret = keys.secret(unsigned.slice(0, unsigned.indexOf('.')));
  if (!secret) return undefined;
  const { mac, hash } = macAndHash(secret, unsigned);
  return { token: `${unsigned}.${mac}`, hash };
}

/**
 * An id only the key holder can compute from `label`: 128 bits of HMAC-SHA256 with the signing
 * key, base64url — the same shape as a random session id.
 */
export function deriveId(keys: KeyRing, label: string): string {
  return mac(keys.signing.secret, label);
}

/** The ids `label` derives under every key of the ring, the signing key's first: what deriveId gave before a rotation is among them. */
export function derivedIds(keys: KeyRing, label: string): string[] {
  const ids = [deriveId(keys, label)];
  for (const id of keys.ids) {
    const secret = keys.secret(id);
    if (secret && id !== keys.signing.id) ids.push(mac(secret, label));
  }
  return ids;
}

/**
 * What a token bound to a client carries of it: 8 bytes of SHA-256 over what the server binds
 * (`Client-Info`, the source address bucketed as the connection caps do, or both), base64url.
 * Inside the MAC'd claims, so it cannot be changed. Not a secret: a hash of so little (an IPv4
 * address is 32 bits) can be searched, so whoever holds a token can learn what it is bound to —
 * which its holder knows anyway. Undefined when the server binds nothing.
 */
export function clientBinding(mode: 'off' | 'program' | 'address' | 'both', clientInfo: string | undefined, address: string | undefined): string | undefined {
  if (mode === 'off') return undefined;
  const program = mode === 'address' ? '' : (clientInfo ?? '');
  const where = mode === 'program' ? '' : (address ?? '');
  return crypto.createHash('sha256').update(`rotor-binding\0${mode}\0${program}\0${where}`).digest().subarray(0, 8).toString('base64url');
}

/** When a token's claims say it expires (ms), or null for never. */
export function claimsExpireAt(claims: Pick<TokenClaims, 'issued' | 'ttlMinutes'>): number | null {
  return claims.ttlMinutes < 0 ? null : claims.issued * 1000 + claims.ttlMinutes * 60_000;
}

/**
 * What the store kept instead of a token before the hash came from the token's own HMAC: 128
 * bits of its SHA-256 (22 characters; the HMAC-derived hash has 21). Sessions stored then are
 * still matched this way, until their next rotation writes the new kind.
 */
export function hashToken(token: string): string {
  if (sha256Latin1) return first16Base64url(crypto.hash('sha256', token, 'base64url'));
  return createHash('sha256').update(token).digest().subarray(0, 16).toString('base64url');
}

const LEGACY_HASH_CHARS = 22;

/** Whether `token`, whose HMAC-derived hash is `hash`, is the token a session stored as `stored` (either kind of hash). */
export function matchesStoredHash(stored: string, token: string, hash: string): boolean {
  return stored.length === LEGACY_HASH_CHARS ? hashToken(token) === stored : hash === stored;
}

/**
 * The hash to present to the session machine for `token` against the stored hash it will be
 * compared with: the HMAC-derived one, or for a session stored before it, the old SHA-256 one.
 */
export function presentedHash(stored: string | undefined, token: string, hash: string): string {
  return stored !== undefined && stored.length === LEGACY_HASH_CHARS ? hashToken(token) : hash;
}
