import { BIN_LENGTH, PROTOCOL_VERSION, type Frame, type Header } from './frame.ts';

const NAME = /^[A-Za-z0-9-]{1,64}$/;
// Values may hold any character but the controls (HT aside) and must not start or end in blanks,
// which the parser would trim: what is serialized must parse back to the same frame.
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$/;
// A lone surrogate would be written as U+FFFD and so parse back to a different string.
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * The canonical byte form of a frame: start line, headers in order, `BIN-Length` last when the
 * frame has a body, an empty line, the body. Throws TypeError for a frame that could not be
 * parsed back (a bug in the caller, never a peer's fault), so no header can smuggle a line break.
 */
export function serializeFrame(frame: Frame): Buffer {
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
  head += serializeHeaders(frame.headers);
  const body = frame.body;
  if (body !== undefined) head += `${BIN_LENGTH}: ${body.length}\r\n`;
  head += '\r\n';
  if (body === undefined || body.length === 0) return Buffer.from(head, 'utf8');
  const headLength = Buffer.byteLength(head, 'utf8');
  const out = Buffer.allocUnsafe(headLength + body.length);
  out.write(head, 0, 'utf8');
  body.copy(out, headLength);
  return out;
}

function serializeHeaders(headers: readonly Header[]): string {
  let text = '';
  const seen = new Set<string>();
  for (const [name, value] of headers) {
    if (!NAME.test(name)) throw new TypeError(`bad header name ${JSON.stringify(name)}`);
    const lower = name.toLowerCase();
    if (lower === 'bin-length') throw new TypeError('BIN-Length is derived from the body, not set as a header');
    if (seen.has(lower)) throw new TypeError(`duplicate header ${name}`);
    seen.add(lower);
    if (BAD_VALUE.test(value) || LONE_SURROGATE.test(value)) throw new TypeError(`bad value for header ${name}`);
    text += `${name}: ${value}\r\n`;
  }
  return text;
}
