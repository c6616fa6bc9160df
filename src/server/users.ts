/** Users from code: what `rotor user add` does, in one call a library user can make. */
import { DEFAULTS, type AuthSettings } from '../config/defaults.ts';
import { pooledRandom, type RandomSource } from '../session/random.ts';
import type { Store } from '../store/types.ts';
import { hashPassword, newTotpSecret, totpFor } from './auth.ts';

export interface AddUserOptions {
  /** Also require a TOTP code at login: a new secret is made and its otpauth URI returned. */
  totp?: boolean | undefined;
  /**
   * The scrypt cost of the new hash and the longest name the server accepts; default
   * DEFAULTS.auth. Pass the server's `auth` settings when it runs with other ones.
   */
  auth?: Partial<Pick<AuthSettings, 'scryptN' | 'scryptR' | 'scryptP' | 'maxUserNameBytes'>> | undefined;
  /** Where the salt comes from (default: the crypto pool). */
  random?: RandomSource | undefined;
  now?: (() => number) | undefined;
}

export interface AddedUser {
  name: string;
  /** With `totp: true`: the `otpauth://totp/…` URI to give the user's authenticator app (it holds the secret). */
  otpauthUri?: string | undefined;
}

/**
 * Add a user to a store, or replace its password (and TOTP secret: without `totp` the user
 * then has none). Refuses a name the server would refuse at login (empty, or longer than
 * `auth.maxUserNameBytes`) with a RangeError.
 */
export async function addUser(store: Store, name: string, password: string, options: AddUserOptions = {}): Promise<AddedUser> {
  const auth = { ...DEFAULTS.auth, ...definedOnly(options.auth ?? {}) };
  if (name === '') throw new RangeError('a user name must not be empty');
  if (Buffer.byteLength(name) > auth.maxUserNameBytes) throw new RangeError(`a user name is at most ${auth.maxUserNameBytes} bytes`);
  const totpSecret = options.totp ? newTotpSecret() : undefined;
  const passwordHash = await hashPassword(password, auth, options.random ?? pooledRandom());
  await store.putUser({ name, passwordHash, ...(totpSecret ? { totpSecret } : {}), createdAt: (options.now ?? Date.now)() });
  return totpSecret ? { name, otpauthUri: totpFor(totpSecret, name).toString() } : { name };
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
