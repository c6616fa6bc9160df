/**
 * The revocation list document (spec §11): `GET /rotor/revocations` answers
 *
 *   {"issuer": "a", "issued": <unix seconds>, "revoked": [<parent session ids>], "publicKeys": {"<id>": "<base64 SPKI DER>"}}
 *
 * with `Signature: <key id>.<base64url Ed25519 signature of the body bytes>, …` — one signature
 * per key of the issuer, so a peer that trusts only the issuer's older key still takes the list
 * that publishes its newer one (hand-over keys rotate). A peer takes it only signed by a key it
 * already trusts for that issuer, never older than the last one it took and not from the
 * future; its publicKeys then become the keys that peer trusts for the issuer.
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import type { HandOverKeys } from './keys.ts';
import { ed25519PublicKey } from './keys.ts';
import { canonical, KEY_ID } from './token.ts';

/** A revocation list larger than this is refused unread (a million parents would be 26 MB). */
export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;
/** How far a document's `issued` may run ahead of this server's clock. */
const FUTURE_SLACK_SECONDS = 300;
const SESSION_ID = /^[A-Za-z0-9_-]{22}$/;

export interface RevocationDocument {
  issuer: string;
  issued: number;
  revoked: string[];
  publicKeys: Record<string, string>;
}

const DOCUMENT = z.strictObject({
  issuer: z.string(),
  issued: z.number().int().nonnegative(),
  revoked: z.array(z.string().regex(SESSION_ID)),
  publicKeys: z.record(z.string().regex(KEY_ID), z.string()),
});

/** The most signatures a Signature header may carry (one per key the issuer has). */
export const MAX_SIGNATURES = 8;

/** The body and Signature header of this server's list: signed by every one of its keys, the signing key first. */
export function signedDocument(document: RevocationDocument, keys: HandOverKeys): { body: Buffer; signature: string } {
  const body = Buffer.from(JSON.stringify(document));
  const signers = [keys.signing, ...keys.all.filter((key) => key !== keys.signing)].slice(0, MAX_SIGNATURES);
  return { body, signature: signers.map((key) => `${key.id}.${sign(null, body, key.privateKey).toString('base64url')}`).join(', ') };
}

/** A peer's document, checked; throws saying why it is refused. */
export function readDocument(
  issuer: string,
  trusted: ReadonlyMap<string, KeyObject>,
  body: Buffer,
  signature: string | undefined,
  now: number,
  lastIssued: number,
): { document: RevocationDocument; publicKeys: Map<string, KeyObject> } {
  if (signature === undefined || signature === '') throw new Error('no Signature: <key id>.<signature>');
  const entries = signature.split(',').map((entry) => entry.trim());
  if (entries.length > MAX_SIGNATURES) throw new Error(`more than ${MAX_SIGNATURES} signatures`);
  // One signature by a key this peer trusts is enough; the others are by keys it has yet to learn.
  const byTrusted = entries.filter((entry) => entry.indexOf('.') > 0 && trusted.has(entry.slice(0, entry.indexOf('.'))));
  if (byTrusted.length === 0) throw new Error(`signed by ${entries.map((entry) => JSON.stringify(entry.slice(0, Math.max(0, entry.indexOf('.'))))).join(', ')}, none of them trusted for ${issuer}`);
  for (const entry of byTrusted) {
    const dot = entry.indexOf('.');
    const bytes = canonical(entry.slice(dot + 1));
    if (bytes?.length !== 64 || !verify(null, body, trusted.get(entry.slice(0, dot))!, bytes)) throw new Error('bad signature');
  }
  let parsed: z.infer<typeof DOCUMENT>;
  try {
    parsed = DOCUMENT.parse(JSON.parse(body.toString('utf8')));
  } catch (err) {
    throw new Error(`not a revocation document: ${(err as Error).message.slice(0, 200)}`);
  }
  if (parsed.issuer !== issuer) throw new Error(`a document of ${JSON.stringify(parsed.issuer)}, not ${issuer}`);
  if (parsed.issued < lastIssued) throw new Error(`older (${parsed.issued}) than the one already taken (${lastIssued})`);
  if (parsed.issued > now / 1000 + FUTURE_SLACK_SECONDS) throw new Error(`issued ${parsed.issued}, in the future`);
  const publicKeys = new Map<string, KeyObject>();
  for (const [id, text] of Object.entries(parsed.publicKeys)) {
    try {
      publicKeys.set(id, ed25519PublicKey(text));
    } catch (err) {
      throw new Error(`public key ${id}: ${(err as Error).message}`);
    }
  }
  if (publicKeys.size === 0) throw new Error('no public keys');
  return { document: parsed, publicKeys };
}
