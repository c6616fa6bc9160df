/**
 * This server's own hand-over keys (spec §11): Ed25519 key pairs in a JSON file
 * `{"keys": [{"id", "privateKey": "<base64 PKCS#8 DER>", "publicKey": "<base64 SPKI DER>"}, …]}`,
 * the first signing, every one listed in the revocation document (so peers learn a new key
 * before it signs). Created with one fresh key, mode 0600, when missing; a file open to group or
 * others is refused, as for the MAC key file. `rotor keys add|retire --hand-over` edit it
 * (addHandOverKey, retireHandOverKey), always by writing a whole new file and renaming it over.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createPrivateFile, readPrivateFile } from '../keys/file.ts';
import { KEY_ID } from './token.ts';

export interface HandOverKeyPair {
  readonly id: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** Signs with the first key; every key's public half goes to the peers. */
export class HandOverKeys {
  readonly signing: HandOverKeyPair;
  readonly all: readonly HandOverKeyPair[];
  private readonly byId: ReadonlyMap<string, HandOverKeyPair>;
  constructor(keys: readonly HandOverKeyPair[]) {
    if (keys.length === 0) throw new Error('hand-over keys: at least one is needed');
    const byId = new Map<string, HandOverKeyPair>();
    for (const key of keys) {
      if (!KEY_ID.test(key.id)) throw new Error(`hand-over keys: bad key id ${JSON.stringify(key.id)}`);
      if (byId.has(key.id)) throw new Error(`hand-over keys: ${key.id} twice`);
      byId.set(key.id, key);
    }
    this.byId = byId;
    this.all = [...keys];
    this.signing = keys[0];
  }
  get(id: string): HandOverKeyPair | undefined {
    return this.byId.get(id);
  }
  /** `{id: base64 SPKI DER}` of every key: the revocation document's `publicKeys`. */
  publicKeys(): Record<string, string> {
    return Object.fromEntries(this.all.map((key) => [key.id, spkiBase64(key.publicKey)]));
  }
}

export function spkiBase64(publicKey: KeyObject): string {
  return publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
}

/** An Ed25519 public key from base64 SPKI DER; throws on anything else. */
export function ed25519PublicKey(base64: string): KeyObject {
  const key = createPublicKey({ key: Buffer.from(base64, 'base64'), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`not an Ed25519 key but ${key.asymmetricKeyType}`);
  return key;
}

/** A fresh key pair; its id, as rotor names new keys, `h` + unix seconds in base 36. */
export function newHandOverKey(now: number = Date.now(), id = `h${Math.floor(now / 1000).toString(36)}`): HandOverKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { id, privateKey, publicKey };
}

function fileText(keys: readonly HandOverKeyPair[]): string {
  const entries = keys.map((key) => ({ id: key.id, privateKey: key.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'), publicKey: spkiBase64(key.publicKey) }));
  return JSON.stringify({ keys: entries }, null, 2) + '\n';
}

/** The hand-over keys at `file`, made with one fresh key (0600) when there is none. */
export function loadOrCreateHandOverKeys(file: string, now: number = Date.now()): HandOverKeys {
  createPrivateFile(file, () => fileText([newHandOverKey(now)]));
  return readHandOverKeys(file);
}

/**
 * Replace the file's keys (the signing key first) atomically: a temporary file (0600) beside it,
 * written and synced, renamed over it — a server re-reading it sees the old keys or the new ones.
 */
export function writeHandOverKeys(file: string, keys: readonly HandOverKeyPair[]): void {
  new HandOverKeys(keys);
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  const fd = openSync(temp, 'wx', 0o600);
  try {
    try {
      writeSync(fd, fileText(keys));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

/**
 * A fresh key added to `file` (the file made with it alone, 0600, when missing). It goes last:
 * published in the revocation list, signing nothing, until `promoteHandOverKey` puts it first —
 * peers learn it from a list the keys they trust also sign, before any token needs it.
 */
export function addHandOverKey(file: string, now: number = Date.now()): { added: HandOverKeyPair; keys: HandOverKeys } {
  const fresh = newHandOverKey(now);
  createPrivateFile(file, () => fileText([fresh]));
  const held = readHandOverKeys(file);
  // No file before: the fresh key is its only one.
  if (held.all.length === 1 && spkiBase64(held.signing.publicKey) === spkiBase64(fresh.publicKey)) return { added: held.signing, keys: held };
  const base = `h${Math.floor(now / 1000).toString(36)}`;
  let id = base;
  for (let n = 0; held.get(id); n++) id = `${base}${n.toString(36)}`;
  const added = newHandOverKey(now, id);
  const keys = [...held.all, added];
  writeHandOverKeys(file, keys);
  return { added, keys: new HandOverKeys(keys) };
}

/** Key `id` of `file` first: it signs from the next load; the one before still verifies. */
export function promoteHandOverKey(file: string, id: string): HandOverKeys {
  const held = readHandOverKeys(file);
  const key = held.get(id);
  if (!key) throw new Error(`${file}: no hand-over key ${id} (keys: ${held.all.map((k) => k.id).join(', ')})`);
  if (held.signing.id === id) throw new Error(`${id} signs already`);
  const keys = [key, ...held.all.filter((k) => k.id !== id)];
  writeHandOverKeys(file, keys);
  return new HandOverKeys(keys);
}

/** Drop key `id` from `file`; the signing key and the last key are refused. */
export function retireHandOverKey(file: string, id: string): HandOverKeys {
  const held = readHandOverKeys(file);
  if (!held.get(id)) throw new Error(`${file}: no hand-over key ${id} (keys: ${held.all.map((key) => key.id).join(', ')})`);
  if (held.all.length === 1) throw new Error(`${id} is the only hand-over key in ${file}: add one first (rotor keys add --hand-over)`);
  if (held.signing.id === id) throw new Error(`${id} is the signing hand-over key in ${file}; only a key that does not sign can be retired`);
  const keys = held.all.filter((key) => key.id !== id);
  writeHandOverKeys(file, keys);
  return new HandOverKeys(keys);
}

/** The hand-over keys at `file`; throws naming the file and the entry for anything wrong. */
export function readHandOverKeys(file: string): HandOverKeys {
  const text = readPrivateFile(file, 'holds the private keys that sign hand-over tokens');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not JSON: ${(err as Error).message}`);
  }
  const entries = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(entries) || Object.keys(parsed as object).length !== 1) throw new Error(`${file}: expected {"keys": [{"id", "privateKey", "publicKey"}, …]}`);
  const keys = entries.map((entry: unknown, i) => {
    const where = `${file}: key ${i + 1}`;
    const { id, privateKey, publicKey, ...rest } = (entry ?? {}) as Record<string, unknown>;
    if (typeof id !== 'string' || typeof privateKey !== 'string' || typeof publicKey !== 'string' || Object.keys(rest).length > 0) {
      throw new Error(`${where} is not {"id", "privateKey": "<base64 PKCS#8 DER>", "publicKey": "<base64 SPKI DER>"}`);
    }
    try {
      const secret = createPrivateKey({ key: Buffer.from(privateKey, 'base64'), format: 'der', type: 'pkcs8' });
      const pub = ed25519PublicKey(publicKey);
      if (secret.asymmetricKeyType !== 'ed25519') throw new Error('the private key is not Ed25519');
      if (spkiBase64(createPublicKey(secret)) !== spkiBase64(pub)) throw new Error('the public key is not the private key’s');
      return { id, privateKey: secret, publicKey: pub };
    } catch (err) {
      throw new Error(`${where} (${id}): ${(err as Error).message}`);
    }
  });
  try {
    return new HandOverKeys(keys);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}
