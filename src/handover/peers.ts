/**
 * The peers file (`--peers FILE`, spec §11): who this server is and which servers it hands
 * clients to and takes them from.
 *
 *   { "self": "a", "peers": [ { "name": "b", "address": "tcp://127.0.0.1:4001",
 *       "publicKeys": { "h1": "<base64 SPKI DER>" }, "revocations": "http://127.0.0.1:4101/rotor/revocations" } ] }
 *
 * Checked whole with zod (unknown keys refused, as in the config file): names as SERVER_NAME,
 * every public key an Ed25519 SPKI, a peer whose tokens are accepted (it has public keys) must
 * say where its revocation list is — without it, its parents' ends would never reach here.
 */
import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { ed25519PublicKey } from './keys.ts';
import { KEY_ID, SERVER_NAME } from './token.ts';

const url = (schemes: readonly string[]) =>
  z.string().refine((text) => {
    try {
      return schemes.includes(new URL(text).protocol.slice(0, -1));
    } catch {
      return false;
    }
  }, `must be a URL of ${schemes.join(', ')}`);

const PEER = z
  .strictObject({
    name: z.string().regex(SERVER_NAME, 'must be 1 to 64 of A-Z a-z 0-9 . _ -'),
    /** Where clients are sent: the Out-of-band header's value. */
    address: url(['tcp', 'tls', 'http', 'https', 'ws', 'wss']),
    publicKeys: z
      .record(z.string().regex(KEY_ID, 'key ids are 1 to 16 of a-z 0-9'), z.string())
      .refine((keys) => Object.values(keys).every(isEd25519), 'every public key must be base64 of an Ed25519 SPKI DER')
      .default({}),
    revocations: url(['http', 'https']).optional(),
  })
  .refine((peer) => Object.keys(peer.publicKeys).length === 0 || peer.revocations !== undefined, {
    message: 'a peer whose hand-over tokens are accepted (it has publicKeys) needs "revocations"',
  });

export const PEERS_SCHEMA = z
  .strictObject({
    self: z.string().regex(SERVER_NAME, 'must be 1 to 64 of A-Z a-z 0-9 . _ -'),
    peers: z.array(PEER),
  })
  .refine((file) => new Set(file.peers.map((peer) => peer.name)).size === file.peers.length, 'a peer is named twice')
  .refine((file) => file.peers.every((peer) => peer.name !== file.self), 'a peer has this server\'s own name');

export type PeersFile = z.input<typeof PEERS_SCHEMA>;

function isEd25519(base64: string): boolean {
  try {
    ed25519PublicKey(base64);
    return true;
  } catch {
    return false;
  }
}

export interface Peer {
  readonly name: string;
  readonly address: string;
  /** Where its revocation list is pulled from; undefined: it issues nothing this server takes. */
  readonly revocations: string | undefined;
  /** The keys its hand-over tokens are checked with, by id: the file's, then what its signed revocation lists say. */
  publicKeys: ReadonlyMap<string, KeyObject>;
}

export interface Peers {
  readonly self: string;
  readonly byName: ReadonlyMap<string, Peer>;
}

/** A peers file's content, checked; throws one line per problem, each with its path. */
export function parsePeers(value: unknown, where = 'peers'): Peers {
  const result = PEERS_SCHEMA.safeParse(value);
  if (!result.success) {
    throw new Error(result.error.issues.map((issue) => `${where}: ${issue.path.join('.') || '(top)'}: ${issue.message}`).join('\n'));
  }
  const byName = new Map<string, Peer>();
  for (const peer of result.data.peers) {
    const publicKeys = new Map(Object.entries(peer.publicKeys).map(([id, key]) => [id, ed25519PublicKey(key)]));
    byName.set(peer.name, { name: peer.name, address: peer.address, revocations: peer.revocations, publicKeys });
  }
  return { self: result.data.self, byName };
}

/** The peers file at `file`. */
export function loadPeers(file: string): Peers {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  return parsePeers(value, file);
}
