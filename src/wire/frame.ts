/** A rotor frame as data. The codec turns these into bytes and back; it knows no sockets. */

export const PROTOCOL_VERSION = 'ROTOR/1';
export const BIN_LENGTH = 'BIN-Length';

export type Header = readonly [name: string, value: string];

export interface RequestFrame {
  readonly kind: 'request';
  /** 1–16 upper-case letters. */
  readonly verb: string;
  /** Starts with '/', visible ASCII only. */
  readonly path: string;
  /** In arrival order, names as sent. BIN-Length is never among them: it becomes `body`. */
  readonly headers: readonly Header[];
  /** Present exactly when the frame had a BIN-Length header (`BIN-Length: 0` gives an empty buffer). */
  readonly body: Buffer | undefined;
}

export interface ResponseFrame {
  readonly kind: 'response';
  /** Three digits, 100–599. */
  readonly status: number;
  readonly reason: string;
  readonly headers: readonly Header[];
  readonly body: Buffer | undefined;
}

export type Frame = RequestFrame | ResponseFrame;

/** Header lookup; names compare case-insensitively, as the spec says. */
export function getHeader(frame: { readonly headers: readonly Header[] }, name: string): string | undefined {
  const headers = frame.headers;
  // Most peers spell names as rotor does: an exact match first, no lower-casing (a new string) per header.
  for (let i = 0; i < headers.length; i++) if (headers[i][0] === name) return headers[i][1];
  let wanted: string | undefined;
  for (let i = 0; i < headers.length; i++) {
    const key = headers[i][0];
    if (key.length === name.length && key.toLowerCase() === (wanted ??= name.toLowerCase())) return headers[i][1];
  }
  return undefined;
}
