import { chmodSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { KeyRing, type MacKey } from '../session/token.ts';
import type { RandomSource } from '../session/random.ts';

/** Permission bits of anyone but the owner. */
export const GROUP_OR_OTHERS = 0o077;

export const octalMode = (mode: number): string => `0${(mode & 0o777).toString(8)}`;

/**
 * The MAC keys live in a JSON file (`[{"id": "k1", "secret": "<base64>"}, …]`, signing key
 * first) so tokens survive a restart and every node sharing a store can share the keys.
 * Created with one fresh key, mode 0600 (its directory 0700 if rotor creates it), when missing.
 *
 * Whoever reads the file can mint tokens, and whoever writes it can plant a key of their own:
 * a file open to group or others is refused, as ssh refuses such a private key.
 */
export function loadOrCreateKeys(file: string, random: RandomSource): KeyRing {
  if (!existsSync(file)) {
    // chmod: the directory is exactly 0700 whatever the umask (which might take the owner's bits too).
    if (mkdirSync(dirname(file), { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dirname(file), 0o700);
    const fresh = [{ id: 'k1', secret: random(32).toString('base64') }];
    writeFileSync(file, JSON.stringify(fresh, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  }
  // The mode of the very file read, not of whatever is at the path a moment earlier.
  const fd = openSync(file, 'r');
  let text: string;
  try {
    const { mode } = fstatSync(fd);
    if ((mode & GROUP_OR_OTHERS) !== 0) {
      throw new Error(
        `${file} holds the MAC keys that sign every token, and its mode ${octalMode(mode)} lets group or others read or change it: ` +
          `run chmod 600 ${file} (and replace the keys if someone else may have read them)`,
      );
    }
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  const parsed = JSON.parse(text) as Array<{ id: string; secret: string }>;
  if (!Array.isArray(parsed)) throw new Error(`${file}: expected a JSON array of keys`);
  const keys: MacKey[] = parsed.map((k) => ({ id: k.id, secret: Buffer.from(k.secret, 'base64') }));
  return new KeyRing(keys);
}

/**
 * A warning when an existing data directory lets group or others in (rotor creates it 0700),
 * undefined when it is private or does not exist yet.
 */
export function openDataDirWarning(dir: string): string | undefined {
  let mode: number;
  try {
    mode = statSync(dir).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if ((mode & GROUP_OR_OTHERS) === 0) return undefined;
  return `the data directory ${dir} (password hashes, TOTP secrets, sessions, and by default the MAC keys) has mode ${octalMode(mode)}, open to group or others: run chmod 700 ${dir}`;
}
