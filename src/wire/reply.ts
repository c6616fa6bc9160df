import { ERRORS, reasonFor, type ErrorCode } from '../errors.ts';
import type { Header } from './frame.ts';
import { serializeFrame } from './serialize.ts';

/** What a carrier sends back for one request frame. */
export interface Reply {
  bytes: Buffer;
  /** A protocol error: after these bytes the connection closes. */
  close: boolean;
}

/** The reply frame for an error code: its status, `Error: <code>`, and close if the code is fatal. */
export function errorReply(code: ErrorCode, extra: Header[] = []): Reply {
  const { status, fatal } = ERRORS[code];
  const headers: Header[] = [['Error', code], ...extra];
  if (code === 'ROTOR_E_RATE_LIMITED') headers.push(['Wait-for', '1']);
  return { bytes: serializeFrame({ kind: 'response', status, reason: reasonFor(status), headers, body: undefined }), close: fatal };
}
