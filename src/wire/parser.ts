import { isUtf8 } from 'node:buffer';
import { RotorError, type ErrorCode } from '../errors.ts';
import type { WireLimits } from '../config/settings.ts';
import { DEFAULTS } from '../config/settings.ts';
import { BIN_LENGTH, PROTOCOL_VERSION, type Frame, type Header } from './frame.ts';

const CR = 13;
const LF = 10;
const SP = 32;
const HT = 9;
const COLON = 58;
const EMPTY = Buffer.alloc(0);
const BIN_LENGTH_LOWER = BIN_LENGTH.toLowerCase();
/** More digits than this cannot be a sane length, and 15 digits still fit a double exactly. */
const MAX_LENGTH_DIGITS = 15;
const MAX_HEADER_NAME = 64;
const MAX_VERB = 16;

export interface ParseResult {
  /** Complete frames, in order. */
  frames: Frame[];
  /** Set at most once in a parser's life; after it the parser ignores all input. */
  error?: RotorError;
}

const enum State {
  StartLine,
  Headers,
  Body,
  Failed,
}

type StartLine =
  | { kind: 'request'; verb: string; path: string }
  | { kind: 'response'; status: number; reason: string };

/**
 * A streaming frame parser: feed it chunks as they arrive, in any sizes, and it returns every
 * frame completed so far. "Need more bytes" is never an error; anything that can never become
 * a valid frame is, at once, and is the last thing the parser says.
 *
 * Memory is bounded by the limits: an unfinished line is refused once it is longer than a
 * line may be, a header block once it is larger than a block may be, and a body once its
 * announced length is larger than a body may be — before a single body byte is buffered.
 *
 * The error never depends on how the bytes were split: it is the rule broken first in byte
 * order, as a reader given one byte at a time would find it (spec.md §1, "Which error").
 * A header line counts as the longer of its form as sent and as serializeFrame writes it, so
 * whatever is accepted can be written back within the same limits.
 */
export class FrameParser {
  private readonly limits: WireLimits;
  private state = State.StartLine;
  /** Bytes of an unfinished line (only ever a line, never body bytes). */
  private pending: Buffer = EMPTY;
  private headerBytes = 0;
  private start: StartLine | undefined;
  private readonly rules: HeaderRules;
  private bodyRemaining = 0;
  private bodyParts: Buffer[] = [];
  private failure: RotorError | undefined;

  constructor(limits: WireLimits = DEFAULTS.wire) {
    this.limits = limits;
    this.rules = new HeaderRules(limits);
  }

  /** True between the first byte of a frame and its last: a close now would truncate it. */
  get midFrame(): boolean {
    return this.state === State.Headers || this.state === State.Body || this.pending.length > 0;
  }

  /** True while the header block of the current frame is still arriving. */
  get inHeaders(): boolean {
    return this.state === State.Headers || (this.state === State.StartLine && this.pending.length > 0);
  }

  /** Bytes held for an unfinished frame (header bytes plus body bytes received so far). */
  get bufferedBytes(): number {
    let body = 0;
    for (const part of this.bodyParts) body += part.length;
    return this.pending.length + body;
  }

  get failed(): RotorError | undefined {
    return this.failure;
  }

  push(chunk: Buffer): ParseResult {
    const frames: Frame[] = [];
    if (this.state === State.Failed) return { frames };
    let buf = chunk;
    if (this.pending.length > 0) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = EMPTY;
    }
    let pos = 0;
    const end = buf.length;
    try {
      while (pos < end) {
        if (this.state === State.Body) {
          const take = Math.min(this.bodyRemaining, end - pos);
          this.bodyParts.push(buf.subarray(pos, pos + take));
          pos += take;
          this.bodyRemaining -= take;
          if (this.bodyRemaining === 0) frames.push(this.finishFrame());
          continue;
        }
        const lf = buf.indexOf(LF, pos);
        this.checkLineBytes(buf, pos, lf === -1 ? end - 1 : lf);
        if (lf === -1) {
          // Copy a short remainder so a large chunk is not retained for a few bytes of it.
          const rest = buf.subarray(pos, end);
          this.pending = rest.length < 4096 ? Buffer.from(rest) : rest;
          pos = end;
          break;
        }
        const lineStart = pos;
        const lineEnd = lf - 1;
        const lineLength = lineEnd - lineStart;
        pos = lf + 1;
        if (this.state === State.StartLine) {
          this.headerBytes += lineLength + 2;
          this.start = parseStartLine(buf, lineStart, lineEnd);
          this.state = State.Headers;
        } else if (lineLength === 0) {
          this.headerBytes += 2;
          const bodyLength = this.rules.bodyLength;
          if (bodyLength <= 0) {
            if (bodyLength === 0) this.bodyParts.push(EMPTY);
            frames.push(this.finishFrame());
          } else {
            this.bodyRemaining = bodyLength;
            this.state = State.Body;
          }
        } else {
          const colon = buf.indexOf(COLON, lineStart);
          const hasColon = colon !== -1 && colon < lineEnd;
          // Counted as the longer of the line as sent and as written (`Name: value`): only a
          // line with no blank around its value is the shorter one, by the missing space.
          const written = hasColon && !isBlank(buf[colon + 1]) && !isBlank(buf[lineEnd - 1]) ? lineLength + 1 : lineLength;
          if (written > this.limits.maxLineBytes) this.fail('ROTOR_E_LINE_TOO_LONG');
          this.headerBytes += written + 2;
          if (this.headerBytes > this.limits.maxHeaderBytes) this.fail('ROTOR_E_HEADERS_TOO_LARGE');
          if (!hasColon) this.fail('ROTOR_E_BAD_HEADER');
          this.parseHeaderLine(buf, lineStart, colon, lineEnd);
        }
      }
    } catch (err) {
      if (err instanceof RotorError) {
        this.state = State.Failed;
        this.failure = err;
        this.pending = EMPTY;
        this.bodyParts = [];
        this.rules.reset();
        return { frames, error: err };
      }
      throw err;
    }
    return { frames };
  }

  /**
   * The peer closed its side. Returns ROTOR_E_TRUNCATED if that cut a frame, and nothing if
   * the stream ended cleanly between frames (or had already failed).
   */
  end(): RotorError | undefined {
    if (this.state === State.Failed) return undefined;
    if (this.midFrame) {
      this.state = State.Failed;
      this.failure = new RotorError('ROTOR_E_TRUNCATED');
      this.pending = EMPTY;
      this.bodyParts = [];
      return this.failure;
    }
    return undefined;
  }

  /**
   * The byte rules of the line that starts at `start`, over its bytes up to `last` (its LF, or
   * the last byte received so far). Each rule is broken at one byte, the first that proves it
   * whatever follows; the rule broken at the earliest byte wins, and at the same byte the line
   * ending beats the line length, which beats the block size. So the answer is the one a
   * byte-at-a-time reader gives, however the bytes were split.
   */
  private checkLineBytes(buf: Buffer, start: number, last: number): void {
    let at = Number.MAX_SAFE_INTEGER;
    let code: ErrorCode = 'ROTOR_E_BAD_LINE_ENDING';
    // A bare CR is proved by the byte after it; a bare LF by itself. Only the first CR matters:
    // it is bare, or it ends the line.
    const cr = buf.indexOf(CR, start);
    if (cr !== -1 && cr < last && buf[cr + 1] !== LF) at = cr + 1;
    else if (buf[last] === LF && (last === start || buf[last - 1] !== CR)) at = last;
    // Too long: byte maxLineBytes + 1 of the line is content unless it is a CR that an LF follows.
    const extra = start + this.limits.maxLineBytes;
    if (extra <= last && buf[extra] !== LF) {
      const proof = buf[extra] !== CR ? extra : extra + 1 <= last && buf[extra + 1] !== LF ? extra + 1 : -1;
      if (proof !== -1 && proof < at) {
        at = proof;
        code = 'ROTOR_E_LINE_TOO_LONG';
      }
    }
    // Too large: every byte of the block counts, CR and LF too.
    const overflow = start + this.limits.maxHeaderBytes - this.headerBytes;
    if (overflow <= last && overflow < at) {
      at = overflow;
      code = 'ROTOR_E_HEADERS_TOO_LARGE';
    }
    if (at <= last) this.fail(code);
  }

  /** A complete header line that has its colon: form, duplicates, then BIN-Length or the count. */
  private parseHeaderLine(buf: Buffer, start: number, colon: number, end: number): void {
    const name = buf.toString('latin1', start, colon);
    checkHeaderName(name);
    this.rules.add(name, headerValue(buf, colon + 1, end));
  }

  private finishFrame(): Frame {
    const start = this.start!;
    let body: Buffer | undefined;
    if (this.bodyParts.length === 1) body = this.bodyParts[0];
    else if (this.bodyParts.length > 1) body = Buffer.concat(this.bodyParts, this.rules.bodyLength);
    const headers = this.rules.headers;
    const frame: Frame =
      start.kind === 'request'
        ? { kind: 'request', verb: start.verb, path: start.path, headers, body }
        : { kind: 'response', status: start.status, reason: start.reason, headers, body };
    this.state = State.StartLine;
    this.start = undefined;
    this.rules.reset();
    this.bodyParts = [];
    this.bodyRemaining = 0;
    this.headerBytes = 0;
    return frame;
  }

  private fail(code: ErrorCode): never {
    throw new RotorError(code);
  }
}

/**
 * What every header of a frame must be once its line is read, after its name and value have
 * passed checkHeaderName and headerValue: no name twice (whatever its case), BIN-Length's value,
 * and the header count (BIN-Length not counted) — in this order, the order of spec.md §1.
 * FrameParser holds every line it reads to these rules; checkFrameHead a header list a carrier
 * hands over. Throws the RotorError of the rule broken.
 */
class HeaderRules {
  headers: Header[] = [];
  /** BIN-Length's value; -1: none. */
  bodyLength = -1;
  private seen: string[] = [];

  constructor(private readonly limits: WireLimits) {}

  add(name: string, value: string): void {
    const lower = name.toLowerCase();
    if (this.seen.includes(lower)) throw new RotorError('ROTOR_E_DUPLICATE_HEADER');
    this.seen.push(lower);
    if (lower === BIN_LENGTH_LOWER) {
      this.bodyLength = parseLength(value, this.limits.maxBodyBytes);
      return;
    }
    // BIN-Length is framing, not a header of the frame: it is not counted, wherever it stands.
    if (this.headers.length >= this.limits.maxHeaders) throw new RotorError('ROTOR_E_TOO_MANY_HEADERS');
    this.headers.push([name, value]);
  }

  reset(): void {
    this.headers = [];
    this.seen = [];
    this.bodyLength = -1;
  }
}

/** A header name: 1 to 64 letters, digits and dashes, else ROTOR_E_BAD_HEADER. */
function checkHeaderName(name: string): void {
  if (name.length === 0 || name.length > MAX_HEADER_NAME) throw new RotorError('ROTOR_E_BAD_HEADER');
  for (let i = 0; i < name.length; i++) {
    if (!isNameByte(name.charCodeAt(i))) throw new RotorError('ROTOR_E_BAD_HEADER');
  }
}

/** The value of the header line bytes `buf[start, end)` after its colon: blanks around it dropped, no control character (HTAB allowed), UTF-8 — else ROTOR_E_BAD_HEADER. */
function headerValue(buf: Buffer, start: number, end: number): string {
  let valueStart = start;
  while (valueStart < end && (buf[valueStart] === SP || buf[valueStart] === HT)) valueStart++;
  let valueEnd = end;
  while (valueEnd > valueStart && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HT)) valueEnd--;
  let highBit = false;
  for (let i = valueStart; i < valueEnd; i++) {
    const byte = buf[i];
    if ((byte < SP && byte !== HT) || byte === 127) throw new RotorError('ROTOR_E_BAD_HEADER');
    if (byte > 127) highBit = true;
  }
  if (!highBit) return buf.toString('latin1', valueStart, valueEnd);
  const bytes = buf.subarray(valueStart, valueEnd);
  if (!isUtf8(bytes)) throw new RotorError('ROTOR_E_BAD_HEADER');
  return bytes.toString('utf8');
}

/**
 * The line and block limits for a whole line of `length` bytes (none of them CR or LF) and its
 * CRLF, starting `before` bytes into the header block: FrameParser's checkLineBytes rule for a
 * line that has arrived whole — broken at the first byte that proves it, and at the same byte
 * the line limit before the block limit. Returns the block's size after the line.
 */
function wholeLine(length: number, before: number, limits: WireLimits): number {
  const tooLongAt = length > limits.maxLineBytes ? limits.maxLineBytes : Number.MAX_SAFE_INTEGER;
  const overflowAt = limits.maxHeaderBytes - before;
  if (tooLongAt <= overflowAt && tooLongAt <= length) throw new RotorError('ROTOR_E_LINE_TOO_LONG');
  if (overflowAt <= length + 1) throw new RotorError('ROTOR_E_HEADERS_TOO_LARGE');
  return before + length + 2;
}

/**
 * The head of a request frame given as data — verb, path and a header list, names and values
 * as latin1 strings of their bytes (as node:http hands them over) — held to exactly the rules
 * FrameParser holds bytes to, with the same code for the same fault, as if it had arrived as
 * `VERB path ROTOR/1` CRLF, one `Name: value` CRLF per header, CRLF. So HTTP's headers get
 * TCP's answers without being written out and parsed again. A CR or LF inside a name or value
 * (node:http lets none through) is ROTOR_E_BAD_LINE_ENDING, as in a frame.
 */
export function checkFrameHead(
  verb: string,
  path: string,
  list: ReadonlyArray<readonly [string, string]>,
  limits: WireLimits,
): { headers: Header[] } | { code: ErrorCode } {
  try {
    const startLine = Buffer.from(`${verb} ${path} ${PROTOCOL_VERSION}`, 'latin1');
    let block = wholeLine(startLine.length, 0, limits);
    if (parseStartLine(startLine, 0, startLine.length).kind !== 'request') throw new RotorError('ROTOR_E_BAD_START_LINE');
    const rules = new HeaderRules(limits);
    for (const [name, value] of list) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new RotorError('ROTOR_E_BAD_LINE_ENDING');
      block = wholeLine(name.length + 2 + value.length, block, limits);
      checkHeaderName(name);
      rules.add(name, headerValue(Buffer.from(value, 'latin1'), 0, value.length));
    }
    wholeLine(0, block, limits);
    return { headers: rules.headers };
  } catch (err) {
    if (err instanceof RotorError) return { code: err.code };
    throw err;
  }
}

function isBlank(byte: number | undefined): boolean {
  return byte === SP || byte === HT;
}

function isNameByte(byte: number): boolean {
  return (
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    byte === 0x2d // -
  );
}

function parseLength(value: string, max: number): number {
  if (value.length === 0 || value.length > MAX_LENGTH_DIGITS) throw new RotorError('ROTOR_E_BAD_LENGTH');
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) throw new RotorError('ROTOR_E_BAD_LENGTH');
  }
  if (value.length > 1 && value.charCodeAt(0) === 0x30) throw new RotorError('ROTOR_E_BAD_LENGTH');
  const length = Number(value);
  if (length > max) throw new RotorError('ROTOR_E_BODY_TOO_LARGE');
  return length;
}

function parseStartLine(buf: Buffer, start: number, end: number): StartLine {
  for (let i = start; i < end; i++) {
    const byte = buf[i];
    if (byte < SP || byte > 126) throw new RotorError('ROTOR_E_BAD_START_LINE');
  }
  const line = buf.toString('latin1', start, end);
  const first = line.indexOf(' ');
  if (first <= 0) throw new RotorError('ROTOR_E_BAD_START_LINE');
  const head = line.slice(0, first);
  if (head.startsWith('ROTOR/')) {
    if (head !== PROTOCOL_VERSION) throw new RotorError('ROTOR_E_BAD_VERSION');
    const second = line.indexOf(' ', first + 1);
    if (second !== first + 4) throw new RotorError('ROTOR_E_BAD_START_LINE');
    const digits = line.slice(first + 1, second);
    if (!/^[1-5][0-9][0-9]$/.test(digits)) throw new RotorError('ROTOR_E_BAD_START_LINE');
    return { kind: 'response', status: Number(digits), reason: line.slice(second + 1) };
  }
  const last = line.lastIndexOf(' ');
  if (last === first) throw new RotorError('ROTOR_E_BAD_START_LINE');
  const version = line.slice(last + 1);
  const path = line.slice(first + 1, last);
  if (version !== PROTOCOL_VERSION) {
    throw new RotorError(/^[A-Za-z]+\/[0-9.]+$/.test(version) ? 'ROTOR_E_BAD_VERSION' : 'ROTOR_E_BAD_START_LINE');
  }
  if (head.length > MAX_VERB || !/^[A-Z]+$/.test(head)) throw new RotorError('ROTOR_E_BAD_START_LINE');
  if (path.length === 0 || path.charCodeAt(0) !== 0x2f || path.includes(' ')) throw new RotorError('ROTOR_E_BAD_START_LINE');
  return { kind: 'request', verb: head, path };
}
