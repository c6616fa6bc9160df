import { scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import * as OTPAuth from 'otpauth';
import { RotorError } from '../errors.ts';
import type { AuthSettings } from '../config/defaults.ts';
import type { RandomSource } from '../session/random.ts';
import type { LoginFailures, Store } from '../store/types.ts';

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

  /** Run `work` in a slot; it is told whether it had to wait for one (what it checked before may have changed meanwhile). */
  async run<T>(work: (queued: boolean) => Promise<T>): Promise<T> {
    const queued = this.running >= this.settings.maxConcurrentHashes;
    if (queued) {
      if (this.waiting.length >= this.settings.maxQueuedLogins) throw new RotorError('ROTOR_E_RATE_LIMITED');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await work(queued);
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

type ThrottleSettings = Pick<
  AuthSettings,
  'failureFactor' | 'addressFailureFactor' | 'userFailureFactor' | 'waitIncrementSeconds' | 'maxFailureWaitSeconds' | 'failureResetMinutes'
>;

/** One login-failure counter a login is covered by: its store key and its factor. */
export interface ThrottleKey {
  readonly key: string;
  readonly factor: number;
}

/**
 * How long a counter of `failures` makes a login wait after its last failure (seconds), as
 * Keycloak's brute-force detection: nothing below `factor` failures, then
 * min(waitIncrementSeconds × ⌊failures / factor⌋, maxFailureWaitSeconds).
 */
export function failureWaitSeconds(failures: number, factor: number, settings: Pick<ThrottleSettings, 'waitIncrementSeconds' | 'maxFailureWaitSeconds'>): number {
  if (factor <= 0 || failures < factor) return 0;
  return Math.min(settings.waitIncrementSeconds * Math.floor(failures / factor), settings.maxFailureWaitSeconds);
}

/**
 * Login throttling (spec §3 Logins), counted in the store so every node on it sees the same
 * counts. A login is covered by up to three counters: its user name (as typed, whether or not
 * the user exists) from its source address, its source address, and its user name from every
 * address. While any of them is in its wait the login is refused at once; a failed login (unknown
 * user, wrong password, wrong TOTP code) counts in all of them; a successful one forgets the
 * (user, address) counter. A frame without a source address (no carrier told one: tests, an
 * embedding program's own dispatch) is counted per user name only.
 */
export class LoginThrottle {
  private readonly windowMs: number;
  constructor(
    private readonly settings: ThrottleSettings,
    private readonly store: Store,
  ) {
    this.windowMs = settings.failureResetMinutes * 60_000;
  }

  /**
   * The counters covering a login of `user` from `address` ('' = unknown), those whose factor is
   * not 0. A login with an access code alone (user '') has its address's counter only: a code is
   * no user, and one counter for every code would let anyone lock every code out.
   */
  /**
   * The counter of failed sealed opens from `address` (spec §12): apart from the logins' own, so
   * forged seals do not hold off the password logins of their address (nor wrong passwords its opens).
   */
  openKeys(address: string): ThrottleKey[] {
    const { addressFailureFactor } = this.settings;
    return address !== '' && addressFailureFactor > 0 ? [{ key: `s\0${address}`, factor: addressFailureFactor }] : [];
  }

  keys(user: string, address: string): ThrottleKey[] {
    const { failureFactor, addressFailureFactor, userFailureFactor } = this.settings;
    const keys: ThrottleKey[] = [];
    if (user === '') return address !== '' && addressFailureFactor > 0 ? [{ key: `a\0${address}`, factor: addressFailureFactor }] : [];
    if (address !== '' && failureFactor > 0) keys.push({ key: pairKey(user, address), factor: failureFactor });
    if (address !== '' && addressFailureFactor > 0) keys.push({ key: `a\0${address}`, factor: addressFailureFactor });
    if (userFailureFactor > 0) keys.push({ key: `u\0${user}`, factor: userFailureFactor });
    return keys;
  }

  /** How long (ms) a login covered by `keys` must still wait at `now`; 0: it may go ahead. */
  async waitMs(keys: readonly ThrottleKey[], now: number): Promise<number> {
    if (keys.length === 0) return 0;
    return this.longestWait(keys, await this.store.loginFailures(keys.map((k) => k.key), now), now);
  }

  /**
   * Count a failed login in the counters covering it. The user's count across addresses gets
   * at most `failureFactor` failures from any one address: it measures how many addresses guess
   * at the name, so one address hammering it (waiting out every wait) cannot lock its owner out
   * from another.
   */
  async failed(keys: readonly ThrottleKey[], now: number): Promise<void> {
    const user = keys.find((k) => k.key.startsWith('u\0'));
    const pair = keys.find((k) => k.key.startsWith('p\0'));
    const others = keys.filter((k) => k !== user);
    const counts = others.length > 0 ? await this.store.recordLoginFailure(others.map((k) => k.key), now, this.windowMs) : [];
    const fromThisAddress = pair ? counts[others.indexOf(pair)].count : 0;
    if (user && (!pair || fromThisAddress <= pair.factor)) await this.store.recordLoginFailure([user.key], now, this.windowMs);
  }

  /** A login of `user` from `address` succeeded: its (user, address) counter starts again. */
  async succeeded(user: string, address: string): Promise<void> {
    if (address !== '' && this.settings.failureFactor > 0) await this.store.clearLoginFailures(pairKey(user, address));
  }

  private longestWait(keys: readonly ThrottleKey[], counts: readonly LoginFailures[], now: number): number {
    let wait = 0;
    keys.forEach(({ factor }, i) => {
      const { count, lastAt } = counts[i];
      const until = lastAt + failureWaitSeconds(count, factor, this.settings) * 1000;
      if (until - now > wait) wait = until - now;
    });
    return wait;
  }
}

/** NUL cannot be in a header value, so neither in a user name nor an address: keys of two kinds never meet. */
function pairKey(user: string, address: string): string {
  return `p\0${address}\0${user}`;
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
