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

/** A response's head: its body length (-1: no body), or why it cannot be read. */
type Head = { status: number; reason: string; headers: Header[]; length: number } | string;

/**
 * Responses that are a header block ending in an empty line and a body of announced length,
 * kept across reads: subclasses say how a head block reads.
 */
abstract class BlockReader {
  private pending: Buffer | undefined;

  protected abstract parseHead(head: string): Head;

  /** Every response completed by `chunk`; `error` when the stream cannot be read on. */
  push(chunk: Buffer): { frames: ResponseFrame[]; error?: string } {
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    const frames: ResponseFrame[] = [];
    let pos = 0;
    while (pos < buf.length) {
      const end = buf.indexOf(HEAD_END, pos);
      if (end === -1) break;
      const head = this.parseHead(buf.toString('latin1', pos, end));
      if (typeof head === 'string') return { frames, error: head };
      const bodyStart = end + HEAD_END.length;
      const bodyEnd = bodyStart + Math.max(head.length, 0);
      if (bodyEnd > buf.length) break;
      frames.push({ kind: 'response', status: head.status, reason: head.reason, headers: head.headers, body: head.length < 0 ? undefined : buf.subarray(bodyStart, bodyEnd) });
      pos = bodyEnd;
    }
    if (pos < buf.length) this.pending = Buffer.from(buf.subarray(pos));
    return { frames };
  }
}

/** The header lines after the first, as [name, value], the length header taken out. */
function headerLines(head: string, lengthHeader: string): { headers: Header[]; length: number } | string {
  const headers: Header[] = [];
  let length = -1;
  let lineEnd = head.indexOf('\r\n');
  while (lineEnd !== -1) {
    const start = lineEnd + 2;
    lineEnd = head.indexOf('\r\n', start);
    const line = lineEnd === -1 ? head.slice(start) : head.slice(start, lineEnd);
    const colon = line.indexOf(':');
    if (colon <= 0) return 'bad header line';
    const name = line.slice(0, colon);
    const value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1).trim();
    if (name.length === lengthHeader.length && name.toLowerCase() === lengthHeader) {
      length = Number(value);
      if (!Number.isSafeInteger(length) || length < 0) return `bad ${name}`;
    } else if (name.toLowerCase() === 'transfer-encoding') {
      return 'chunked responses are not read by the benchmark';
    } else {
      headers.push([name, value]);
    }
  }
  return { headers, length };
}

/** rotor frames: `ROTOR/1 200 OK`, BIN-Length bodies. */
export class ResponseReader extends BlockReader {
  protected parseHead(head: string): Head {
    if (!head.startsWith(PREFIX) || head.charCodeAt(PREFIX.length + 3) !== 32) return `bad start line ${JSON.stringify(head.slice(0, 40))}`;
    const lineEnd = head.indexOf('\r\n');
    const lines = headerLines(head, BIN_LENGTH_LOWER);
    if (typeof lines === 'string') return lines;
    return { status: Number(head.slice(PREFIX.length, PREFIX.length + 3)), reason: head.slice(PREFIX.length + 4, lineEnd === -1 ? head.length : lineEnd), ...lines };
  }
}

const HTTP_STATUS = /^HTTP\/1\.[01] ([1-5][0-9][0-9]) ?([^\r]*)/;

/** HTTP/1.1 responses with Content-Length bodies (what rotor and the bare server send), as frames. */
export class HttpResponseReader extends BlockReader {
  protected parseHead(head: string): Head {
    const status = HTTP_STATUS.exec(head);
    if (!status) return `bad HTTP status line ${JSON.stringify(head.slice(0, 40))}`;
    const lines = headerLines(head, 'content-length');
    if (typeof lines === 'string') return lines;
    return { status: Number(status[1]), reason: status[2], headers: lines.headers, length: Math.max(lines.length, 0) };
  }
}
