/**
 * The proof every request of a sealed session carries (spec §12), as client and server compute
 * it: `Seal-Proof: <nonce>.<digest>.<mac>`. No server state here, so the client library uses
 * this very code; the server passes its own faster HMAC (`Mac`), which gives the same bytes.
 */
import * as crypto from 'node:crypto';
import { createHash, createHmac } from 'node:crypto';
import type { Header } from '../wire/index.ts';
import { canonicalBase64url } from '../base64url.ts';

/** HMAC-SHA256 of `text` under `key`, its first 16 bytes in base64url (22 characters). */
export type Mac = (key: Buffer, text: string) => string;

export const macOf: Mac = (key, text) => createHmac('sha256', key).update(text).digest().subarray(0, 16).toString('base64url');

const sha256Base64url: (data: Buffer) => string =
  typeof crypto.hash === 'function' ? (data) => crypto.hash('sha256', data, 'base64url') : (data) => createHash('sha256').update(data).digest('base64url');

/** SHA-256 of no bytes, base64url: the digest of a request without a body. */
export const EMPTY_DIGEST = '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU';

/** base64url of SHA-256 of a request's body (43 characters); an absent body is no bytes. */
export function bodyDigest(body: Buffer | undefined): string {
  return body === undefined || body.length === 0 ? EMPTY_DIGEST : sha256Base64url(body);
}

/**
 * What the MAC is over: `rotor-seal/1 request\n<nonce>\n<verb>\n<path>\n<digest>`, then a line
 * `<name>:<value>` (the name lower-case) for each header `covered`, in order.
 */
export function proofText(nonce: string, verb: string, path: string, digest: string, covered: readonly Header[] = NO_HEADERS): string {
  let text = `rotor-seal/1 request\n${nonce}\n${verb}\n${path}\n${digest}`;
  for (const [name, value] of covered) text += `\n${name.toLowerCase()}:${value}`;
  return text;
}

const NO_HEADERS: readonly Header[] = Object.freeze([]);

/** The `Seal-Proof` value of a request under the token whose `Seal-Nonce` is `nonce`, its proof covering the headers `covered` too. */
export function sealProof(key: Buffer, nonce: string, verb: string, path: string, body: Buffer | undefined, mac: Mac = macOf, covered: readonly Header[] = NO_HEADERS): string {
  const digest = bodyDigest(body);
  return `${nonce}.${digest}.${mac(key, proofText(nonce, verb, path, digest, covered))}`;
}

/**
 * The headers a request of a sealed session adds for its proof: `Seal-Proof`, and — when it has
 * headers of its own (`covered`) — `Seal-Headers`, naming them, so the proof covers them too.
 */
export function proofHeaders(key: Buffer, nonce: string, verb: string, path: string, body: Buffer | undefined, covered: readonly Header[] = NO_HEADERS, mac: Mac = macOf): Header[] {
  for (const [name] of covered) if (UNCOVERABLE.has(name.toLowerCase())) throw new Error(`a sealed request cannot carry ${name}: the proof cannot cover it (spec §12)`);
  const proof: Header = ['Seal-Proof', sealProof(key, nonce, verb, path, body, mac, covered)];
  return covered.length === 0 ? [proof] : [['Seal-Headers', covered.map(([name]) => name.toLowerCase()).join(', ')], proof];
}

/**
 * Headers a proof may not name: rotor's own framing and the proof's, and those a carrier renames
 * or drops (HTTP's own and hop-by-hop headers, note 003's names, X-Rotor-Verb) — a proof over one
 * would hold on one carrier and fail on another.
 */
export const UNCOVERABLE: ReadonlySet<string> = new Set([
  'token', 'seal-proof', 'seal-headers', 'bin-length',
  'host', 'content-length', 'expect', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'x-rotor-verb', 'x-auth-appinstanceid', 'x-auth-seal', 'x-auth-nonce', 'x-auth-cnonce', 'x-auth-sessiontoken', 'x-auth-sealedsessiontoken',
]);

/**
 * The headers a request's `Seal-Headers` names, in its order, as the frame has them; undefined
 * when it names one the frame lacks, one twice, or one of Token, Seal-Proof, Seal-Headers,
 * BIN-Length. No `Seal-Headers`: none.
 */
export function coveredHeaders(headers: readonly Header[], listed: string | undefined): Header[] | undefined {
  if (listed === undefined) return [];
  const names = listed.split(',').map((name) => name.trim().toLowerCase());
  if (names.some((name) => name === '' || UNCOVERABLE.has(name)) || new Set(names).size !== names.length) return undefined;
  const covered: Header[] = [];
  for (const name of names) {
    const found = headers.find(([n]) => n.toLowerCase() === name);
    if (found === undefined) return undefined;
    covered.push(found);
  }
  return covered;
}

const PROOF_CHARS = /^[A-Za-z0-9_.-]*$/;

/** Where the first dot of a `Seal-Proof` value is, or undefined when it is not three parts of 1–64, 43 and 22 base64url characters. */
export function proofShape(value: string): number | undefined {
  const first = value.indexOf('.');
  const second = first === -1 ? -1 : value.indexOf('.', first + 1);
  // Lengths first, by the dots: the one pattern test is on a value of the right shape.
  if (first < 1 || first > 64 || second !== first + 44 || value.length !== second + 23 || value.indexOf('.', second + 1) !== -1 || !PROOF_CHARS.test(value)) return undefined;
  return first;
}

/** The text an app key signs to open a session: `rotor-seal/1 open\n<app>\n<instance>\n<open nonce>\n<Seal-Key>\n<body digest>`. */
export function openText(app: string, instance: string, openNonce: string, sealKey: string, digest: string): string {
  return `rotor-seal/1 open\n${app}\n${instance}\n${openNonce}\n${sealKey}\n${digest}`;
}

/** The HKDF info of a session key: `rotor-seal/1 session\n<app>\n<instance>\n<instance's Seal-Key>\n<server's Seal-Key>`. */
export function sessionKeyInfo(app: string, instance: string, instanceKey: string, serverKey: string): string {
  return `rotor-seal/1 session\n${app}\n${instance}\n${instanceKey}\n${serverKey}`;
}

/** The session key both sides derive from their X25519 shared secret (spec §12); undefined for an all-zero secret. */
export function sessionKey(shared: Buffer, openNonce: string, info: string): Buffer | undefined {
  if (shared.every((byte) => byte === 0)) return undefined;
  return Buffer.from(crypto.hkdfSync('sha256', shared, Buffer.from(openNonce), Buffer.from(info), 32));
}

// Raw 32-byte X25519 / Ed25519 keys as node:crypto KeyObjects: a fixed DER prefix, then the bytes.
const X25519_PRIVATE = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_PUBLIC = Buffer.from('302a300506032b656e032100', 'hex');
const ED25519_PRIVATE = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_PUBLIC = Buffer.from('302a300506032b6570032100', 'hex');

export const x25519Private = (raw: Buffer): crypto.KeyObject => crypto.createPrivateKey({ key: Buffer.concat([X25519_PRIVATE, raw]), format: 'der', type: 'pkcs8' });
export const x25519Public = (raw: Buffer): crypto.KeyObject => crypto.createPublicKey({ key: Buffer.concat([X25519_PUBLIC, raw]), format: 'der', type: 'spki' });
export const ed25519Private = (seed: Buffer): crypto.KeyObject => crypto.createPrivateKey({ key: Buffer.concat([ED25519_PRIVATE, seed]), format: 'der', type: 'pkcs8' });
export const ed25519Public = (raw: Buffer): crypto.KeyObject => crypto.createPublicKey({ key: Buffer.concat([ED25519_PUBLIC, raw]), format: 'der', type: 'spki' });

/** The raw 32 bytes of an X25519 or Ed25519 public key (the end of its SPKI DER). */
export function rawPublicKey(key: crypto.KeyObject): Buffer {
  return key.export({ format: 'der', type: 'spki' }).subarray(-32);
}

/** An X25519 key pair from 32 bytes of private key (a client's or server's fresh pair for one open). */
export function x25519Pair(privateRaw: Buffer): { privateKey: crypto.KeyObject; publicRaw: Buffer } {
  const privateKey = x25519Private(privateRaw);
  return { privateKey, publicRaw: rawPublicKey(crypto.createPublicKey(privateKey)) };
}

/** X25519(private, public) as bytes. */
export function x25519Shared(privateKey: crypto.KeyObject, publicRaw: Buffer): Buffer {
  return crypto.diffieHellman({ privateKey, publicKey: x25519Public(publicRaw) });
}

/** 32 bytes from base64url in canonical form (a raw X25519 or Ed25519 key), or undefined. */
export const bytes32 = (text: string): Buffer | undefined => canonicalBase64url(text, 32);
/** 64 bytes from base64url in canonical form (an Ed25519 signature), or undefined. */
export const bytes64 = (text: string): Buffer | undefined => canonicalBase64url(text, 64);
