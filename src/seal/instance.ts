/**
 * The instance's side of an open (spec §12), transport-free: what to send for an open nonce, and
 * the session key from the server's reply. The client library and the tests drive it; a client
 * in another language does the same from spec.md.
 */
import { randomBytes, sign } from 'node:crypto';
import type { Header } from '../wire/index.ts';
import { bodyDigest, bytes32, ed25519Private, openText, sessionKey, sessionKeyInfo, x25519Pair, x25519Shared } from './proof.ts';

export interface AppIdentity {
  /** The app id `rotor app add` printed. */
  readonly app: string;
  /** This instance's id: its host name or address (1–128 of A-Z a-z 0-9 . _ : -). */
  readonly instance: string;
  /** The app key `rotor app add` printed once: base64url of the Ed25519 seed. */
  readonly key: string;
}

export interface PendingOpen {
  /** The headers of `POST /rotor/seal`. */
  readonly headers: Header[];
  /** The session key, from the open reply's `Seal-Key`; undefined when that is unusable. */
  sessionKey(serverKey: string): Buffer | undefined;
}

/**
 * An open for `openNonce` (`GET /rotor/seal`'s `Seal-Nonce`) whose body (the initial metadata,
 * JSON) is `body`, with a fresh X25519 key pair (`privateRaw`: its 32 private bytes, for fixed examples).
 */
export function startOpen(identity: AppIdentity, openNonce: string, privateRaw: Buffer = randomBytes(32), body?: Buffer): PendingOpen {
  const seed = Buffer.from(identity.key, 'base64url');
  if (seed.length !== 32) throw new Error('an app key is base64url of 32 bytes');
  const pair = x25519Pair(privateRaw);
  const sealKey = pair.publicRaw.toString('base64url');
  const seal = sign(null, Buffer.from(openText(identity.app, identity.instance, openNonce, sealKey, bodyDigest(body))), ed25519Private(seed)).toString('base64url');
  return {
    headers: [
      ['App', identity.app],
      ['Instance', identity.instance],
      ['Seal-Nonce', openNonce],
      ['Seal-Key', sealKey],
      ['Seal', seal],
    ],
    sessionKey(serverKey) {
      const serverPublic = bytes32(serverKey);
      if (!serverPublic) return undefined;
      return sessionKey(x25519Shared(pair.privateKey, serverPublic), openNonce, sessionKeyInfo(identity.app, identity.instance, sealKey, serverKey));
    },
  };
}
