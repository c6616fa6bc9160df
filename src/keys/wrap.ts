/**
 * Wrapping a MAC key's secret for the store (spec §11): AES-256-GCM under the node's 32-byte
 * wrapping key, a random 12-byte IV per wrap, the key's id as associated data — so a wrapped
 * secret moved to another key's entry does not unwrap either. The text kept is base64 of
 * IV ‖ ciphertext ‖ 16-byte tag.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export const WRAP_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A wrapped secret that does not unwrap: another wrapping key, or a changed ciphertext, IV, tag or key id. */
export class UnwrapError extends Error {
  override name = 'UnwrapError';
}

export function wrapSecret(wrapKey: Buffer, id: string, secret: Buffer, iv: Buffer = randomBytes(IV_BYTES)): string {
  checkWrapKey(wrapKey);
  if (iv.length !== IV_BYTES) throw new Error(`an IV is ${IV_BYTES} bytes`);
  const cipher = createCipheriv('aes-256-gcm', wrapKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(id, 'utf8'));
  const body = Buffer.concat([cipher.update(secret), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64');
}

/** The secret `wrapped` holds; throws UnwrapError when it does not unwrap under `wrapKey` for `id`. */
export function unwrapSecret(wrapKey: Buffer, id: string, wrapped: string): Buffer {
  checkWrapKey(wrapKey);
  const bytes = Buffer.from(wrapped, 'base64');
  if (bytes.length <= IV_BYTES + TAG_BYTES) throw new UnwrapError(`key ${id}: the wrapped secret is too short`);
  const decipher = createDecipheriv('aes-256-gcm', wrapKey, bytes.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(id, 'utf8'));
  decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new UnwrapError(`key ${id} does not unwrap with this wrapping key`);
  }
}

function checkWrapKey(wrapKey: Buffer): void {
  if (wrapKey.length !== WRAP_KEY_BYTES) throw new Error(`a wrapping key is ${WRAP_KEY_BYTES} bytes, this one ${wrapKey.length}`);
}
