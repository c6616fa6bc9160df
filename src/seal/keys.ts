/**
 * The server's side of sealing's keys (spec §12):
 *  - a session key at rest: AES-256-GCM under a key derived (HKDF) from the MAC key that signs the
 *    session's newest token, the session id as associated data, kept as `<MAC key id>.<base64>`;
 *    wrapped again under the signing key when a rotation finds another one signing, so it unwraps
 *    while the session's newest token can be valid. Unwrapped keys are cached by their wrapped
 *    text: the hot path is one Map lookup.
 *  - open nonces: `<MAC key id>.<16 bytes: issue second, 12 random>.<MAC>`, checked without the
 *    store; that each opens once is the store's (a catalog record per used nonce).
 */
import { hkdfSync } from 'node:crypto';
import { mac, type KeyRing } from '../session/token.ts';
import type { RandomSource } from '../session/random.ts';
import { unwrapSecret, UnwrapError, wrapSecret } from '../keys/wrap.ts';

const WRAP_INFO = 'rotor-seal/1 wrap';
const NONCE_LABEL = 'rotor-seal/1 open-nonce.';
/** Unwrapped session keys held at most; past it the oldest go (and are unwrapped again when asked for). */
const CACHED_KEYS = 65_536;

export class SessionKeys {
  private readonly wrapKeys = new WeakMap<Buffer, Buffer>();
  /** By wrapped text, with the session it unwrapped for: a wrapped key copied into another session's record must not unwrap there either. */
  private readonly cache = new Map<string, { session: string; key: Buffer }>();
  constructor(
    private readonly ring: KeyRing,
    private readonly random: RandomSource,
  ) {}

  /** `key` of `session` wrapped under the signing key. */
  wrap(session: string, key: Buffer): string {
    const signing = this.ring.signing;
    const wrapped = `${signing.id}.${wrapSecret(this.wrapKey(signing.secret), session, key, this.random(12))}`;
    this.remember(session, wrapped, key);
    return wrapped;
  }

  /** The session key `wrapped` holds; undefined when its MAC key is gone or it does not unwrap (another session's, or changed). */
  unwrap(session: string, wrapped: string): Buffer | undefined {
    const cached = this.cache.get(wrapped);
    if (cached !== undefined) return cached.session === session ? cached.key : undefined;
    const dot = wrapped.indexOf('.');
    const secret = dot > 0 ? this.ring.secret(wrapped.slice(0, dot)) : undefined;
    if (secret === undefined) return undefined;
    try {
      const key = unwrapSecret(this.wrapKey(secret), session, wrapped.slice(dot + 1));
      this.remember(session, wrapped, key);
      return key;
    } catch (err) {
      if (err instanceof UnwrapError) return undefined;
      throw err;
    }
  }

  /** `wrapped` as the session's next record keeps it: as it is while its key signs, else wrapped again under the signing key (undefined: it does not unwrap). */
  current(session: string, wrapped: string): string | undefined {
    const id = this.ring.signing.id;
    if (wrapped.charCodeAt(id.length) === 0x2e && wrapped.startsWith(id)) return wrapped;
    const key = this.unwrap(session, wrapped);
    return key === undefined ? undefined : this.wrap(session, key);
  }

  /** A fresh open nonce, issued at `now` (ms). */
  openNonce(now: number): string {
    const payload = Buffer.alloc(16);
    payload.writeUInt32BE(Math.floor(now / 1000) >>> 0, 0);
    this.random(12).copy(payload, 4);
    const signing = this.ring.signing;
    const text = `${signing.id}.${payload.toString('base64url')}`;
    return `${text}.${mac(signing.secret, NONCE_LABEL + text)}`;
  }

  /**
   * An open nonce's random part (its single-use id) and until when its use must be remembered,
   * if this server made it less than `maxAgeMs` ago (or at most `skewMs` ahead, by another node's
   * clock); undefined for one it did not make, or one too old. The use is remembered until no
   * node whose clock is within `skewMs` of this one could take the nonce any more.
   */
  checkOpenNonce(nonce: string, now: number, maxAgeMs: number, skewMs: number): { id: string; expiresAt: number } | undefined {
    const parts = nonce.split('.');
    if (parts.length !== 3 || parts[1].length !== 22 || parts[2].length !== 22) return undefined;
    const secret = this.ring.secret(parts[0]);
    if (secret === undefined || mac(secret, `${NONCE_LABEL}${parts[0]}.${parts[1]}`) !== parts[2]) return undefined;
    const payload = Buffer.from(parts[1], 'base64url');
    if (payload.length !== 16 || payload.toString('base64url') !== parts[1]) return undefined;
    const issuedMs = payload.readUInt32BE(0) * 1000;
    // Issue times are whole seconds: a nonce is taken for less than maxAgeMs, and at most skewMs from the future.
    if (now - issuedMs >= maxAgeMs || issuedMs - now > skewMs) return undefined;
    return { id: parts[1], expiresAt: issuedMs + maxAgeMs + 2 * skewMs + 1000 };
  }

  private wrapKey(secret: Buffer): Buffer {
    let key = this.wrapKeys.get(secret);
    if (key === undefined) this.wrapKeys.set(secret, (key = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), WRAP_INFO, 32))));
    return key;
  }

  private remember(session: string, wrapped: string, key: Buffer): void {
    if (this.cache.size >= CACHED_KEYS) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(wrapped, { session, key });
  }
}
