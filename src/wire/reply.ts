import { ERRORS, reasonFor, type ErrorCode } from '../errors.ts';
import { getHeader, PROTOCOL_VERSION, type Header, type ResponseFrame } from './frame.ts';
import { parseOneFrame, TRUSTED_LIMITS } from './one-frame.ts';
import { serializeFrame } from './serialize.ts';

/**
 * What a carrier sends back for one request frame, as data and as bytes. Either form may come
 * first — the dispatcher builds frames, a replay comes back from the store as bytes — and the
 * other is made from it on first use, once: the TCP carrier writes `bytes`, the HTTP carrier maps
 * `frame` onto a response, and nobody parses rotor's own output per request. Both forms are
 * immutable, so one Reply may be shared (the error replies below are).
 */
export class Reply {
  private frameForm: ResponseFrame | undefined;
  private bytesForm: Buffer | undefined;

  private constructor(
    frame: ResponseFrame | undefined,
    bytes: Buffer | undefined,
    /** A protocol error: after this reply the connection closes. */
    readonly close: boolean,
  ) {
    this.frameForm = frame;
    this.bytesForm = bytes;
  }

  /** A reply frame; its bytes are made when a carrier first asks for them. */
  static of(status: number, headers: readonly Header[], body?: Buffer, close = false): Reply {
    return new Reply({ kind: 'response', status, reason: reasonFor(status), headers, body }, undefined, close);
  }

  /** A reply already serialized (with the limits its maker chose) together with the frame it was made from. */
  static serialized(frame: ResponseFrame, bytes: Buffer): Reply {
    return new Reply(frame, bytes, false);
  }

  /** Bytes rotor made earlier (a replay): the frame is read back from them only if a carrier needs it. */
  static fromBytes(bytes: Buffer): Reply {
    return new Reply(undefined, bytes, false);
  }

  get frame(): ResponseFrame {
    if (this.frameForm === undefined) {
      const parsed = parseOneFrame(this.bytesForm!, TRUSTED_LIMITS);
      if (!('frame' in parsed) || parsed.frame.kind !== 'response') throw new Error('a reply that is not one response frame');
      this.frameForm = parsed.frame;
    }
    return this.frameForm;
  }

  get bytes(): Buffer {
    return (this.bytesForm ??= serializeFrame(this.frameForm!));
  }

  get status(): number {
    if (this.frameForm !== undefined) return this.frameForm.status;
    // Three digits at a fixed place after `ROTOR/1 `: no parse needed.
    const bytes = this.bytesForm!;
    const at = PROTOCOL_VERSION.length + 1;
    return (bytes[at] - 48) * 100 + (bytes[at + 1] - 48) * 10 + (bytes[at + 2] - 48);
  }

  /** The reply's `Error` code, if it is an error reply. */
  get error(): ErrorCode | undefined {
    const code = getHeader(this.frame, 'Error');
    return code !== undefined && code in ERRORS ? (code as ErrorCode) : undefined;
  }
}

/** The error reply of each code that carries nothing else: made once, shared. */
const plainErrors = new Map<ErrorCode, Reply>();

/**
 * The reply frame for an error code: its status, `Error: <code>`, and close if the code is
 * fatal. ROTOR_E_RATE_LIMITED carries `Wait-for: 1` unless `extra` says how long.
 */
export function errorReply(code: ErrorCode, extra: readonly Header[] = []): Reply {
  if (extra.length === 0) {
    const known = plainErrors.get(code);
    if (known) return known;
  }
  const { status, fatal } = ERRORS[code];
  const headers: Header[] = [['Error', code], ...extra];
  if (code === 'ROTOR_E_RATE_LIMITED' && !extra.some(([name]) => name === 'Wait-for')) headers.push(['Wait-for', '1']);
  const reply = Reply.of(status, headers, undefined, fatal);
  if (extra.length === 0) plainErrors.set(code, reply);
  return reply;
}
