import http from 'node:http';
import https from 'node:https';
import type tls from 'node:tls';
import type { Header, RequestFrame, ResponseFrame } from '../wire/index.ts';
import { asTransportError, TransportError } from './errors.ts';
import { parseEnvelope } from './html.ts';
import type { ClientTransport, Connect } from './transport.ts';

export interface HttpOptions {
  /** For https: URLs: `ca` for a private certificate (`rejectUnauthorized: false` only in tests). */
  tls?: Pick<tls.ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'servername' | 'checkServerIdentity'> | undefined;
  /** Per-request timeout. */
  timeoutMs?: number | undefined;
  /** Send every request as POST with the rotor verb in X-Rotor-Verb (for proxies that pass only POST). */
  postOnly?: boolean | undefined;
  /** Ask for the HTML envelope (Accept: text/html) and read the response back out of the page. */
  html?: boolean | undefined;
}

/** Verbs sent as the HTTP method itself; any other goes as POST + X-Rotor-Verb. */
const HTTP_VERBS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
/** Response headers that belong to HTTP, not to the rotor reply. */
const HTTP_OWNED = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'cache-control', 'date']);

/**
 * rotor over HTTP/1.1 or HTTPS (`http://host:port`, `https://…`; a path in the URL is a prefix
 * put before every rotor path, for a reverse proxy that strips it). One keep-alive socket per
 * transport. Rotor headers travel as HTTP headers, the body as the HTTP body, and the response
 * is read back into a response frame; an HTTP error that is not a rotor answer (no `Error`
 * header: a proxy's page, say) is a TransportError, so the client retries with the same token.
 *
 * Over HTTP an empty reply body and no body look the same; both come back as no body.
 */
export function httpConnect(url: string | URL, options: HttpOptions = {}): Connect {
  const target = new URL(url);
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new TypeError(`not an http(s) URL: ${target.href}`);
  return async () => new HttpTransport(target, options);
}

class HttpTransport implements ClientTransport {
  private readonly agent: http.Agent;
  private readonly secure: boolean;
  private readonly prefix: string;
  private dead = false;

  constructor(
    private readonly target: URL,
    private readonly options: HttpOptions,
  ) {
    this.secure = target.protocol === 'https:';
    this.prefix = target.pathname.replace(/\/+$/, '');
    this.agent = this.secure ? new https.Agent({ keepAlive: true, maxSockets: 1, ...options.tls }) : new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  request(frame: RequestFrame): Promise<ResponseFrame> {
    if (this.dead) return Promise.reject(new TransportError('closed'));
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    const native = !this.options.postOnly && HTTP_VERBS.has(frame.verb);
    const headers: Record<string, string> = {};
    for (const [name, value] of frame.headers) headers[name] = toLatin1(value);
    if (!native) headers['X-Rotor-Verb'] = frame.verb;
    if (this.options.html) headers.Accept = 'text/html';
    if (frame.body !== undefined) headers['Content-Length'] = String(frame.body.length);
    return new Promise<ResponseFrame>((resolve, reject) => {
      const request = (this.secure ? https : http).request(
        {
          protocol: this.target.protocol,
          hostname: this.target.hostname.replace(/^\[|\]$/g, ''),
          port: this.target.port || (this.secure ? 443 : 80),
          method: native ? frame.verb : 'POST',
          path: this.prefix + frame.path,
          headers,
          agent: this.agent,
          ...(this.secure ? this.options.tls : {}),
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.once('error', (err) => fail(err));
          response.once('end', () => {
            clearTimeout(timer);
            try {
              resolve(this.toFrame(response, Buffer.concat(chunks)));
            } catch (err) {
              reject(asTransportError(err as Error));
            }
          });
        },
      );
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(asTransportError(err));
      };
      const timer = setTimeout(() => request.destroy(new TransportError(`no response within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      request.once('error', fail);
      // Without this node:http adds `Content-Length: 0` to a bodiless POST, and the server could
      // no longer tell "no body" from "an empty body".
      if (frame.body === undefined) (request as http.ClientRequest & { useChunkedEncodingByDefault: boolean }).useChunkedEncodingByDefault = false;
      request.end(frame.body);
    });
  }

  close(): void {
    this.dead = true;
    this.agent.destroy();
  }

  private toFrame(response: http.IncomingMessage, body: Buffer): ResponseFrame {
    const type = response.headers['content-type'] ?? '';
    if (this.options.html && type.toLowerCase().startsWith('text/html')) return parseEnvelope(body.toString('utf8'));
    const headers: Header[] = [];
    const raw = response.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      if (!HTTP_OWNED.has(raw[i].toLowerCase())) headers.push([raw[i], Buffer.from(raw[i + 1], 'latin1').toString('utf8')]);
    }
    const status = response.statusCode ?? 0;
    if (status >= 400 && response.headers.error === undefined) throw new TransportError(`HTTP ${status} ${response.statusMessage ?? ''} is not a rotor answer`.trim());
    return { kind: 'response', status, reason: response.statusMessage ?? '', headers, body: body.length > 0 ? body : undefined };
  }
}

function toLatin1(value: string): string {
  return /^[\x20-\x7e\t]*$/.test(value) ? value : Buffer.from(value, 'utf8').toString('latin1');
}
