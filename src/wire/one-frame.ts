import type { ErrorCode } from '../errors.ts';
import type { WireLimits } from '../config/settings.ts';
import { FrameParser } from './parser.ts';
import type { Frame } from './frame.ts';

/** Limits for decoding bytes rotor itself produced (a reply it is about to re-dress for HTTP). */
export const TRUSTED_LIMITS: WireLimits = Object.freeze({
  maxLineBytes: 1 << 30,
  maxHeaderBytes: 1 << 30,
  maxHeaders: 1 << 20,
  maxBodyBytes: 1 << 30,
});

/**
 * Bytes that must hold exactly one frame (a WebSocket message, a reply): parsed with a fresh
 * parser, so nothing carries over from one message to the next. A parse error keeps its own
 * code; an empty message, a second frame or trailing bytes are ROTOR_E_BAD_START_LINE; a frame
 * cut short by the end of the message is ROTOR_E_TRUNCATED.
 */
export function parseOneFrame(bytes: Buffer, limits: WireLimits): { frame: Frame } | { code: ErrorCode } {
  const parser = new FrameParser(limits);
  const { frames, error } = parser.push(bytes);
  if (error) return { code: error.code };
  if (frames.length === 0) return { code: parser.midFrame ? 'ROTOR_E_TRUNCATED' : 'ROTOR_E_BAD_START_LINE' };
  if (frames.length > 1 || parser.midFrame) return { code: 'ROTOR_E_BAD_START_LINE' };
  return { frame: frames[0] };
}
