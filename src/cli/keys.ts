import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { KeyRing, type MacKey } from '../session/token.ts';
import type { RandomSource } from '../session/random.ts';

/**
 * The MAC keys live in a JSON file (`[{"id": "k1", "secret": "<base64>"}, …]`, signing key
 * first) so tokens survive a restart and every node sharing a store can share the keys.
 * Created with one fresh key, mode 0600, when missing.
 */
export function loadOrCreateKeys(file: string, random: RandomSource): KeyRing {
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    const fresh = [{ id: 'k1', secret: random(32).toString('base64') }];
    writeFileSync(file, JSON.stringify(fresh, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  }
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Array<{ id: string; secret: string }>;
  if (!Array.isArray(parsed)) throw new Error(`${file}: expected a JSON array of keys`);
  const keys: MacKey[] = parsed.map((k) => ({ id: k.id, secret: Buffer.from(k.secret, 'base64') }));
  return new KeyRing(keys);
}
