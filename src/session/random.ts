import { randomFillSync } from 'node:crypto';

/** Where fresh random bytes come from; tests inject a seeded one to make exchanges reproducible. */
export type RandomSource = (length: number) => Buffer;

const POOL_SIZE = 8 * 1024;

/**
 * Cryptographic random bytes from a pooled buffer: one randomFillSync per 8 KiB instead of
 * one call per token (lessons.md: ≈ 50× cheaper). Each caller gets its own copy.
 */
export function pooledRandom(): RandomSource {
  const pool = Buffer.allocUnsafe(POOL_SIZE);
  let offset = POOL_SIZE;
  return (length: number) => {
    if (length > POOL_SIZE) return randomFillSync(Buffer.allocUnsafe(length));
    if (offset + length > POOL_SIZE) {
      randomFillSync(pool);
      offset = 0;
    }
    const out = Buffer.from(pool.subarray(offset, offset + length));
    offset += length;
    return out;
  };
}

/** A deterministic source for tests and spec examples: NOT random, never use it to serve. */
export function seededRandom(seed: number): RandomSource {
  let x = seed >>> 0 || 1;
  return (length: number) => {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      out[i] = x & 0xff;
    }
    return out;
  };
}
