/**
 * Access codes (spec §10): 16 characters of Crockford's base32 — 80 random bits, printed as
 * `XXXX-XXXX-XXXX-XXXX` — easy to type from a card (no I, L, O or U; case, spaces and dashes do
 * not matter; O reads as 0, I and L as 1). The store keeps only a code's SHA-256: 80 bits are
 * far beyond guessing from a copy of the store, so no server key is needed to check one, and a
 * key rotation never orphans a lot.
 */
import { createHash } from 'node:crypto';
import type { RandomSource } from '../session/random.ts';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
export const CODE_CHARS = 16;
const TYPED = /^[0-9A-Z]{16}$/;

/** A fresh code, grouped for printing. */
export function newCode(random: RandomSource): string {
  const bytes = random(10);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(value >>> bits) & 31];
    }
    value &= (1 << bits) - 1;
  }
  return `${out.slice(0, 4)}-${out.slice(4, 8)}-${out.slice(8, 12)}-${out.slice(12)}`;
}

/** The code as typed, made canonical; undefined when it cannot be a code (wrong length or characters). */
export function normalizeCode(typed: string): string | undefined {
  if (typed.length > 64) return undefined;
  const plain = typed.toUpperCase().replace(/[\s-]/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');
  if (!TYPED.test(plain) || plain.includes('U')) return undefined;
  return plain;
}

/** The id a code is stored under. */
export function codeId(normalized: string): string {
  return createHash('sha256').update(`rotor-code\0${normalized}`).digest('base64url');
}
