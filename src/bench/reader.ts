/**
 * The load generator's reader of response frames. The codec's FrameParser validates every byte
 * of every header, which is right for a server and too much for a load generator that has to be
 * faster than the server it loads: profiled against the echo ceiling, FrameParser was over half
 * of the load generator's CPU and the load generator spent more per request than the server.
 * This reader trusts the server's framing (one latin1 slice per header block, lines split by
 * indexOf) and checks only what it needs to stay in step: the start line, the header lines'
 * colons, BIN-Length. Anything else malformed is the server's bug and ends the connection.
 */
import { BIN_LENGTH, PROTOCOL_VERSION, type Header, type ResponseFrame } from '../wire/index.ts';

const HEAD_END = Buffer.from('\r\n\r\n');
const PREFIX = `${PROTOCOL_VERSION} `;
const BIN_LENGTH_LOWER = BIN_LENGTH.toLowerCase();

export class ResponseReader {
  private pending: Buffer | undefined;

  /** Every response completed by `chunk`; `error` when the stream cannot be a rotor stream. */
  push(chunk: Buffer): { frames: ResponseFrame[]; error?: string } {
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    const frames: ResponseFrame[] = [];
    let pos = 0;
    while (pos < buf.length) {
      const end = buf.indexOf(HEAD_END, pos);
      if (end === -1) break;
      const head = buf.toString('latin1', pos, end);
      if (!head.startsWith(PREFIX) || head.charCodeAt(PREFIX.length + 3) !== 32) return { frames, error: `bad start line ${JSON.stringify(head.slice(0, 40))}` };
      const status = Number(head.slice(PREFIX.length, PREFIX.length + 3));
      let lineEnd = head.indexOf('\r\n');
      const reason = head.slice(PREFIX.length + 4, lineEnd === -1 ? head.length : lineEnd);
      const headers: Header[] = [];
      let length = -1;
      while (lineEnd !== -1) {
        const start = lineEnd + 2;
        lineEnd = head.indexOf('\r\n', start);
        const line = lineEnd === -1 ? head.slice(start) : head.slice(start, lineEnd);
        const colon = line.indexOf(':');
        if (colon <= 0) return { frames, error: 'bad header line' };
        const name = line.slice(0, colon);
        const value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1).trim();
        if (name.length === BIN_LENGTH.length && name.toLowerCase() === BIN_LENGTH_LOWER) {
          length = Number(value);
          if (!Number.isSafeInteger(length) || length < 0) return { frames, error: 'bad BIN-Length' };
        } else {
          headers.push([name, value]);
        }
      }
      const bodyStart = end + HEAD_END.length;
      const bodyEnd = bodyStart + Math.max(length, 0);
      if (bodyEnd > buf.length) break;
      frames.push({ kind: 'response', status, reason, headers, body: length < 0 ? undefined : buf.subarray(bodyStart, bodyEnd) });
      pos = bodyEnd;
    }
    if (pos < buf.length) this.pending = Buffer.from(buf.subarray(pos));
    return { frames };
  }
}
