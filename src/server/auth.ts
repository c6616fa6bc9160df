import { scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import * as OTPAuth from 'otpauth';
import { RotorError } from '../errors.ts';
import type { AuthSettings } from '../config/defaults.ts';
import type { RandomSource } from '../session/random.ts';

function scrypt(password: string, salt: Buffer, keylen: number, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, keylen, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

const KEY_BYTES = 32;

/** `scrypt$N$r$p$<salt>$<hash>`, base64url. Runs on the thread pool, never on the event loop. */
export async function hashPassword(password: string, settings: AuthSettings, random: RandomSource): Promise<string> {
  const salt = random(16);
  const key = await scrypt(password, salt, KEY_BYTES, settings.scryptN, settings.scryptR, settings.scryptP);
  return ['scrypt', settings.scryptN, settings.scryptR, settings.scryptP, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/**
 * A hash of nothing anyone knows, made with the configured cost: an unknown user then costs as
 * much as a wrong password, whatever `auth.scrypt*` says (a fixed dummy answered an unknown user
 * 14× slower than a wrong password at N = 1024).
 */
export function dummyHash(settings: Pick<AuthSettings, 'scryptN' | 'scryptR' | 'scryptP'>): string {
  return ['scrypt', settings.scryptN, settings.scryptR, settings.scryptP, 'A'.repeat(22), 'A'.repeat(43)].join('$');
}

export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  const salt = Buffer.from(parts[4], 'base64url');
  const expected = Buffer.from(parts[5], 'base64url');
  const key = await scrypt(password, salt, expected.length, N, r, p);
  return timingSafeEqual(key, expected);
}

/**
 * Bounds password hashing: at most `maxConcurrentHashes` scrypt calls at once, at most
 * `maxQueuedLogins` waiting; beyond that a login is refused at once with ROTOR_E_RATE_LIMITED
 * instead of queueing without bound (a login storm must not starve token exchanges).
 */
export class HashLimiter {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly settings: Pick<AuthSettings, 'maxConcurrentHashes' | 'maxQueuedLogins'>) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.settings.maxConcurrentHashes) {
      if (this.waiting.length >= this.settings.maxQueuedLogins) throw new RotorError('ROTOR_E_RATE_LIMITED');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

export const TOTP_PERIOD_SECONDS = 30;

export function newTotpSecret(): string {
  return new OTPAuth.Secret({ size: 20 }).base32;
}

export function totpFor(secretBase32: string, user: string): OTPAuth.TOTP {
  return new OTPAuth.TOTP({ issuer: 'rotor', label: user, secret: OTPAuth.Secret.fromBase32(secretBase32), period: TOTP_PERIOD_SECONDS, digits: 6, algorithm: 'SHA1' });
}

/** The time step a code matches within `window` steps of `now`, or undefined. */
export function matchTotp(secretBase32: string, code: string, now: number, window: number): number | undefined {
  if (!/^[0-9]{6}$/.test(code)) return undefined;
  const delta = totpFor(secretBase32, '').validate({ token: code, timestamp: now, window });
  if (delta === null) return undefined;
  return Math.floor(now / 1000 / TOTP_PERIOD_SECONDS) + delta;
}
