import { statSync } from 'node:fs';
import { createPrivateFile, GROUP_OR_OTHERS, octalMode, readKeyFile } from '../keys/file.ts';
import { KeyRing } from '../session/token.ts';
import type { RandomSource } from '../session/random.ts';

/**
 * A fixed key ring from a key file in the 0.1 format (`[{"id": "k1", "secret": "<base64>"}, …]`,
 * signing key first), made with one fresh key when missing: for a server given a KeyRing of its
 * own (tests, the crash fixtures). `rotor serve` keeps its ring in the store instead, wrapped
 * with the key file's wrapping key (src/keys/).
 */
export function loadOrCreateKeys(file: string, random: RandomSource): KeyRing {
  createPrivateFile(file, () => JSON.stringify([{ id: 'k1', secret: random(32).toString('base64') }], null, 2) + '\n');
  const material = readKeyFile(file);
  if (!material.legacy) throw new Error(`${file}: a wrapping key, not 0.1's list of keys: its ring is in the store`);
  return new KeyRing([...material.seed]);
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
  return `the data directory ${dir} (password hashes, TOTP secrets, sessions, and by default the key file) has mode ${octalMode(mode)}, open to group or others: run chmod 700 ${dir}`;
}
