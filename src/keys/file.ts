/**
 * The node's key file (`--key-file`, default `<data>/keys.json`; spec §11): `{"wrap": "<base64>"}`,
 * the 32-byte key that wraps the ring's secrets in the store, created with a fresh one (mode
 * 0600, its directory 0700) when missing. It may also hold `"keys": [{"id", "secret"}]`, which
 * seed a store that has no ring yet.
 *
 * The 0.1 format, `[{"id": "k1", "secret": "<base64>"}, …]` (signing key first), is read as it
 * is and never rewritten (it may sit on a read-only secrets mount, and every node has a copy):
 * its keys seed the store's ring, and its wrapping key is derived from its content (HKDF-SHA256),
 * so every node holding the same 0.1 file gets the same wrapping key without a word between them.
 *
 * Whoever reads the file can unwrap every MAC key of a copy of the store, and whoever writes it
 * can plant keys: a file open to group or others is refused, as ssh refuses such a private key.
 */
import { hkdfSync } from 'node:crypto';
import { chmodSync, closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { MacKey } from '../session/token.ts';
import type { RandomSource } from '../session/random.ts';
import { WRAP_KEY_BYTES } from './wrap.ts';

/** Permission bits of anyone but the owner. */
export const GROUP_OR_OTHERS = 0o077;

export const octalMode = (mode: number): string => `0${(mode & 0o777).toString(8)}`;

/** What a node knows of the keys before it reads the store: the wrapping key, and keys for a store without a ring. */
export interface KeyMaterial {
  /** 32 bytes: wraps and unwraps the secrets of the store's ring. */
  readonly wrap: Buffer;
  /** Keys that seed the ring of a store that has none (the signing key first); none: a fresh key. */
  readonly seed: readonly MacKey[];
  /** Read from a file in the 0.1 format (its wrapping key derived from it). */
  readonly legacy?: boolean | undefined;
  /** Where it was read from, for messages. */
  readonly file?: string | undefined;
}

/** The key file at `file`, made with a fresh wrapping key when there is none. */
export function loadOrCreateKeyFile(file: string, random: RandomSource): KeyMaterial {
  createPrivateFile(file, () => JSON.stringify({ wrap: random(WRAP_KEY_BYTES).toString('base64') }, null, 2) + '\n');
  return readKeyFile(file);
}

/** The key file at `file`, in either format; throws naming the file for anything else. */
export function readKeyFile(file: string): KeyMaterial {
  const parsed = readPrivateJson(file, 'holds the key that unwraps the MAC keys that sign every token');
  if (Array.isArray(parsed)) {
    const seed = macKeys(file, parsed);
    return { wrap: legacyWrapKey(seed), seed, legacy: true, file };
  }
  if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { wrap?: unknown }).wrap !== 'string') {
    throw new Error(`${file}: expected {"wrap": "<base64 of 32 bytes>"} (or 0.1's [{"id", "secret"}, …])`);
  }
  const { wrap, keys } = parsed as { wrap: string; keys?: unknown };
  const bytes = Buffer.from(wrap, 'base64');
  if (bytes.length !== WRAP_KEY_BYTES) throw new Error(`${file}: "wrap" must be base64 of ${WRAP_KEY_BYTES} bytes, it holds ${bytes.length}`);
  if (keys !== undefined && !Array.isArray(keys)) throw new Error(`${file}: "keys" must be a list of {"id", "secret"}`);
  return { wrap: bytes, seed: keys === undefined ? [] : macKeys(file, keys), file };
}

/**
 * The wrapping key of a 0.1 key file: HKDF-SHA256 over its keys, in order. Anyone who holds the
 * file holds its MAC keys anyway; a node with another 0.1 file gets another wrapping key, and
 * refuses to start on a store whose ring this one wrote.
 */
export function legacyWrapKey(keys: readonly MacKey[]): Buffer {
  const ikm = Buffer.concat(keys.flatMap((key) => [Buffer.from(`${key.id}\0`), key.secret, Buffer.from('\0')]));
  return Buffer.from(hkdfSync('sha256', ikm, 'rotor key file 0.1', 'wrap', WRAP_KEY_BYTES));
}

function macKeys(file: string, entries: unknown[]): MacKey[] {
  if (entries.length === 0) throw new Error(`${file}: no keys in it`);
  return entries.map((entry, i) => {
    const { id, secret } = (entry ?? {}) as { id?: unknown; secret?: unknown };
    if (typeof id !== 'string' || typeof secret !== 'string') throw new Error(`${file}: key ${i + 1} is not {"id": "…", "secret": "<base64>"}`);
    return { id, secret: Buffer.from(secret, 'base64') };
  });
}

/** Write `content()` to `file` (mode 0600, its directory 0700 if made here) unless it exists. */
export function createPrivateFile(file: string, content: () => string): void {
  // chmod: the directory is exactly 0700 whatever the umask (which might take the owner's bits too).
  if (mkdirSync(dirname(file), { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dirname(file), 0o700);
  try {
    writeFileSync(file, content(), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Made meanwhile (another node, another command): that one is read.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/** A secret file's JSON, as readPrivateFile reads it; throws naming the file when it is not JSON. */
export function readPrivateJson(file: string, holds: string): unknown {
  const text = readPrivateFile(file, holds);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not JSON: ${(err as Error).message}`);
  }
}

/** A secret file's text; refused when its mode lets group or others in (`holds` says what is at stake). */
export function readPrivateFile(file: string, holds: string): string {
  // The mode of the very file read, not of whatever is at the path a moment earlier.
  const fd = openSync(file, 'r');
  try {
    const { mode } = fstatSync(fd);
    if ((mode & GROUP_OR_OTHERS) !== 0) {
      throw new Error(`${file} ${holds}, and its mode ${octalMode(mode)} lets group or others read or change it: run chmod 600 ${file} (and replace the keys if someone else may have read them)`);
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
