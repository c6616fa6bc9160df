/** base64url (RFC 4648 §5, no padding) read strictly: rotor takes keys, signatures and claims in one spelling only. */

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * The bytes of `text`, only in their one canonical spelling: Node's decoder skips foreign
 * characters and a last character's unused bits, which would let many spellings stand for one
 * value. Undefined for anything else, or when `length` is given and the bytes are not that long.
 */
export function canonicalBase64url(text: string, length?: number): Buffer | undefined {
  if (!BASE64URL.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  if (length !== undefined && bytes.length !== length) return undefined;
  return bytes.toString('base64url') === text ? bytes : undefined;
}
