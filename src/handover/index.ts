/**
 * Hand-over to a second server (spec §11): the public face. A server with peers builds one
 * HandOver from its peers file and its own hand-over keys and gives it to its Rotor
 * (`RotorDeps.handOver`, or `rotor.useHandOver(h)`); handlers then return `handOver: "<peer>"`.
 */
export { HandOver, DEFAULT_PULL_SECONDS, type HandOverOptions } from './service.ts';
export { loadPeers, parsePeers, PEERS_SCHEMA, type Peer, type Peers, type PeersFile } from './peers.ts';
export { HandOverKeys, loadOrCreateHandOverKeys, readHandOverKeys, writeHandOverKeys, newHandOverKey, spkiBase64, type HandOverKeyPair } from './keys.ts';
export { mintHandOver, parseHandOver, signedBy, MAX_LIFETIME_SECONDS, type HandOverClaims, type ParsedHandOver } from './token.ts';
export { readDocument, signedDocument, type RevocationDocument } from './document.ts';
export { REVOCATIONS_PATH } from './login.ts';
