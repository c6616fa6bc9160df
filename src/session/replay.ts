/**
 * Replay copies at rest. The reply kept for a lost-reply retry carries the session's newest
 * token, and a store must never hold a usable token (spec §2): one read of the store file would
 * log a thief in. So the copy a store keeps has the MAC cut from its `Token` header, and the
 * server, which holds the key, puts the same MAC back when it replays — the bytes sent again are
 * identical to the first ones, and the store alone cannot produce them.
 *
 * Every reply rotor keeps for replay starts `<start line>\r\nToken: <token>\r\n` (the dispatcher
 * puts Token first); anything else is a bug and throws.
 */
import { matchesStoredHash, resign, unsignedPart, type KeyRing } from './token.ts';

const TOKEN_LINE = Buffer.from('\r\nToken: ', 'latin1');

/** Where the Token value of a kept reply starts and ends. */
function tokenValue(reply: Buffer): { start: number; end: number } {
  const startLineEnd = reply.indexOf(TOKEN_LINE);
  const start = startLineEnd + TOKEN_LINE.length;
  const end = reply.indexOf('\r\n', start, 'latin1');
  if (startLineEnd < 0 || startLineEnd !== reply.indexOf('\r\n', 0, 'latin1') || end < 0) {
    throw new Error('a reply kept for replay must start with its Token header');
  }
  return { start, end };
}

/** The copy of `reply` a store may keep: its Token without the MAC. */
export function replyAtRest(reply: Buffer): Buffer {
  const { start, end } = tokenValue(reply);
  const unsigned = unsignedPart(reply.toString('latin1', start, end));
  return Buffer.concat([reply.subarray(0, start + unsigned.length), reply.subarray(end)]);
}

/**
 * replyAtRest for a reply the caller just serialized with `token` (ASCII) in its Token header:
 * the MAC is cut where the token says it is, without reading the token back out of the bytes.
 */
export function replyAtRestOf(reply: Buffer, token: string): Buffer {
  const startLineEnd = reply.indexOf(TOKEN_LINE);
  const start = startLineEnd + TOKEN_LINE.length;
  const end = start + token.length;
  const unsignedEnd = start + token.lastIndexOf('.');
  // Where the token must be: right after the start line, its dot and the CRLF after it in place.
  if (startLineEnd < 0 || reply.indexOf(13) !== startLineEnd || reply[unsignedEnd] !== 0x2e || reply[end] !== 13) return replyAtRest(reply);
  const kept = Buffer.allocUnsafe(reply.length - (end - unsignedEnd));
  reply.copy(kept, 0, 0, unsignedEnd);
  reply.copy(kept, unsignedEnd, end);
  return kept;
}

/**
 * The reply a kept copy was made from, byte for byte; undefined when the token's key has been
 * retired, or when the re-made token is not the one whose hash the session holds. That check
 * keeps the server from being a signing oracle: without it, whoever can write to the store
 * could put any claims in a kept reply and have the server sign them at the next replay.
 */
export function replyFromRest(keys: KeyRing, kept: Buffer, expectedHash: string): Buffer | undefined {
  const { start, end } = tokenValue(kept);
  const remade = resign(keys, kept.toString('latin1', start, end));
  if (remade === undefined || !matchesStoredHash(expectedHash, remade.token, remade.hash)) return undefined;
  return Buffer.concat([kept.subarray(0, start), Buffer.from(remade.token, 'latin1'), kept.subarray(end)]);
}
