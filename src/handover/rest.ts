/**
 * A reply that hands over is kept for replay like any other (spec §4), and a store must hold no
 * usable token (spec §2) — a hand-over token is one, at its peer. So the kept copy has the
 * signature cut from its `Hand-over` header, as session/replay.ts cuts the Token's MAC, and the
 * server signs it again when it replays: Ed25519 is deterministic, so the bytes sent again are
 * the first ones. It signs again only claims of the very session replayed, its user, issued here
 * — a store writer cannot have it sign a token for anything else.
 */
import type { SessionState } from '../session/types.ts';
import type { HandOverKeys } from './keys.ts';
import { parseUnsigned, signHandOver } from './token.ts';

const LINE = Buffer.from('\r\nHand-over: ', 'latin1');
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/** Where the Hand-over value of a reply's header block is, if it has one. */
function handOverValue(reply: Buffer): { start: number; end: number } | undefined {
  const headEnd = reply.indexOf(HEAD_END);
  const line = reply.indexOf(LINE);
  if (line < 0 || headEnd < 0 || line >= headEnd) return undefined;
  const start = line + LINE.length;
  return { start, end: reply.indexOf('\r\n', start, 'latin1') };
}

/** `kept` with its Hand-over token's signature cut off. */
export function handOverAtRest(kept: Buffer): Buffer {
  const at = handOverValue(kept);
  if (!at) return kept;
  const cut = kept.lastIndexOf(0x2e, at.end - 1);
  return cut < at.start ? kept : Buffer.concat([kept.subarray(0, cut), kept.subarray(at.end)]);
}

/** `kept` with its Hand-over token signed again, when it is this session's; else as it is (the peer refuses what it cannot check). */
export function handOverFromRest(kept: Buffer, session: SessionState, self: string, keys: HandOverKeys): Buffer {
  const at = handOverValue(kept);
  if (!at) return kept;
  const unsigned = kept.toString('latin1', at.start, at.end);
  let parsed: ReturnType<typeof parseUnsigned>;
  try {
    parsed = parseUnsigned(unsigned);
  } catch {
    return kept;
  }
  const key = keys.get(parsed.keyId);
  const { claims } = parsed;
  if (!key || claims.issuer !== self || claims.parent !== session.id || claims.user !== session.user) return kept;
  const token = signHandOver(unsigned, key.privateKey);
  return Buffer.concat([kept.subarray(0, at.start), Buffer.from(token, 'latin1'), kept.subarray(at.end)]);
}
