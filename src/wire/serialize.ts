import type { WireLimits } from '../config/settings.ts';
import { DEFAULTS } from '../config/settings.ts';
import type { ErrorCode } from '../errors.ts';
import { BIN_LENGTH, PROTOCOL_VERSION, type Frame, type Header } from './frame.ts';

const NAME = /^[A-Za-z0-9-]{1,64}$/;
// Values may hold any character but the controls (HT aside) and must not start or end in blanks,
// which the parser would trim: what is serialized must parse back to the same frame.
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$/;
/** The common case, checked first: printable ASCII with no blank at either end (a token, a number, a media type). */
const PLAIN_VALUE = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;
// A lone surrogate would be written as U+FFFD and so parse back to a different string.
const LONE_SURROGATE = /\p{Surrogate}/u;
/** `BIN-Length: ` */
const BIN_LENGTH_PREFIX = BIN_LENGTH.length + 2;

/**
 * A frame the serializer will not write because a parser with the same limits would refuse its
 * bytes; `code` is the error that parser would give. (A TypeError is a frame no limits allow.)
 */
export class FrameLimitError extends RangeError {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'FrameLimitError';
    this.code = code;
  }
}

/**
 * The canonical byte form of a frame: start line, headers in order, `BIN-Length` last when the
 * frame has a body, an empty line, the body. Throws TypeError for a frame that could not be
 * parsed back (a bug in the caller, never a peer's fault), so no header can smuggle a line break,
 * and FrameLimitError for one that `new FrameParser(limits)` would refuse: it never writes bytes
 * its own parser, with the same limits, does not accept.
 */
export function serializeFrame(frame: Frame, limits: WireLimits = DEFAULTS.wire): Buffer {
  let head: string;
  if (frame.kind === 'request') {
    if (!/^[A-Z]{1,16}$/.test(frame.verb)) throw new TypeError(`bad verb ${JSON.stringify(frame.verb)}`);
    if (!/^\/[\x21-\x7e]*$/.test(frame.path)) throw new TypeError(`bad path ${JSON.stringify(frame.path)}`);
    head = `${frame.verb} ${frame.path} ${PROTOCOL_VERSION}\r\n`;
  } else {
    if (!Number.isInteger(frame.status) || frame.status < 100 || frame.status > 599) throw new TypeError(`bad status ${frame.status}`);
    if (!/^[\x20-\x7e]*$/.test(frame.reason)) throw new TypeError(`bad reason ${JSON.stringify(frame.reason)}`);
    head = `${PROTOCOL_VERSION} ${frame.status} ${frame.reason}\r\n`;
  }
  // The start line is ASCII; a header line is at most 3 bytes per UTF-16 unit of its value.
  let mayBreakLimits = head.length - 2 > limits.maxLineBytes || frame.headers.length > limits.maxHeaders;
  const seen = new Set<string>();
  for (const [name, value] of frame.headers) {
    checkHeader(name, value, seen);
    head += `${name}: ${value}\r\n`;
    if (name.length + 2 + 3 * value.length > limits.maxLineBytes) mayBreakLimits = true;
  }
  const body = frame.body;
  if (body !== undefined) head += `${BIN_LENGTH}: ${body.length}\r\n`;
  head += '\r\n';
  if (body === undefined || body.length === 0) {
    // The head is the whole frame: encode it once and measure that.
    const out = Buffer.from(head, 'utf8');
    checkLimits(frame, head, out.length, mayBreakLimits, limits);
    return out;
  }
  const headLength = Buffer.byteLength(head, 'utf8');
  checkLimits(frame, head, headLength, mayBreakLimits, limits);
  const out = Buffer.allocUnsafe(headLength + body.length);
  out.write(head, 0, 'utf8');
  body.copy(out, headLength);
  return out;
}

function checkLimits(frame: Frame, head: string, headLength: number, mayBreakLimits: boolean, limits: WireLimits): void {
  const body = frame.body;
  // BIN-Length's line has at most 15 digits: it can only be too long under a tiny line limit.
  const bodyMayBreak = body !== undefined && (body.length > limits.maxBodyBytes || BIN_LENGTH_PREFIX + 15 > limits.maxLineBytes);
  if (!mayBreakLimits && !bodyMayBreak && headLength <= limits.maxHeaderBytes) return;
  const refusal = limitBroken(frame, head.indexOf('\r\n'), limits);
  if (refusal) throw refusal;
}

function checkHeader(name: string, value: string, seen: Set<string>): void {
  if (!NAME.test(name)) throw new TypeError(`bad header name ${JSON.stringify(name)}`);
  const lower = name.toLowerCase();
  if (lower === 'bin-length') throw new TypeError('BIN-Length is derived from the body, not set as a header');
  if (seen.has(lower)) throw new TypeError(`duplicate header ${name}`);
  seen.add(lower);
  if (!PLAIN_VALUE.test(value) && (BAD_VALUE.test(value) || LONE_SURROGATE.test(value))) throw new TypeError(`bad value for header ${name}`);
}

/**
 * The first limit the frame's canonical bytes break, judged as the parser judges them: line by
 * line in byte order, a line's length and the block size at the byte that proves them (the
 * length first at the same byte), then the header count (BIN-Length not counted) or the body.
 */
function limitBroken(frame: Frame, startLength: number, limits: WireLimits): FrameLimitError | undefined {
  let block = 0;
  const line = (length: number, what: string): FrameLimitError | undefined => {
    const tooLongAt = length > limits.maxLineBytes ? limits.maxLineBytes : Infinity;
    const overflowAt = block + length + 2 > limits.maxHeaderBytes ? limits.maxHeaderBytes - block : Infinity;
    block += length + 2;
    if (tooLongAt !== Infinity && tooLongAt <= overflowAt) {
      return new FrameLimitError('ROTOR_E_LINE_TOO_LONG', `${what} would be ${length} bytes, over maxLineBytes (${limits.maxLineBytes})`);
    }
    if (overflowAt !== Infinity) {
      return new FrameLimitError('ROTOR_E_HEADERS_TOO_LARGE', `the header block would pass maxHeaderBytes (${limits.maxHeaderBytes}) at ${what}`);
    }
    return undefined;
  };
  const broken =
    line(startLength, 'the start line') ??
    frame.headers.reduce<FrameLimitError | undefined>(
      (found, [name, value], i) =>
        found ??
        line(name.length + 2 + Buffer.byteLength(value, 'utf8'), `header ${name}`) ??
        (i >= limits.maxHeaders ? new FrameLimitError('ROTOR_E_TOO_MANY_HEADERS', `${frame.headers.length} headers, over maxHeaders (${limits.maxHeaders})`) : undefined),
      undefined,
    );
  if (broken) return broken;
  const body = frame.body;
  if (body !== undefined) {
    const bodyLine = line(BIN_LENGTH_PREFIX + String(body.length).length, BIN_LENGTH);
    if (bodyLine) return bodyLine;
    if (body.length > limits.maxBodyBytes) {
      return new FrameLimitError('ROTOR_E_BODY_TOO_LARGE', `a body of ${body.length} bytes, over maxBodyBytes (${limits.maxBodyBytes})`);
    }
  }
  return line(0, 'the empty line');
}

/**
 * How many bytes `frame` is in rotor's frame format: what serializeFrame would make, without
 * making it. Quotas count frames by this (spec §10), so an exchange costs the same on every
 * carrier whatever the carrier wraps it in.
 */
export function frameSize(frame: Frame): number {
  let size = frame.kind === 'request' ? frame.verb.length + 1 + Buffer.byteLength(frame.path) + 1 + PROTOCOL_VERSION.length + 2 : PROTOCOL_VERSION.length + 5 + frame.reason.length + 2;
  for (const [name, value] of frame.headers) size += name.length + 2 + Buffer.byteLength(value) + 2;
  const body = frame.body;
  if (body !== undefined) size += BIN_LENGTH.length + 2 + String(body.length).length + 2 + body.length;
  return size + 2;
}
