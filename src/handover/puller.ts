/**
 * The background pull of peers' revocation lists (spec §11): every `intervalMs` each peer that
 * issues tokens here is asked for its list — node:http or node:https GET, bounded by `timeoutMs`
 * and MAX_DOCUMENT_BYTES — and what arrives is handed to `take`. Never on the request path: a peer
 * that is down, stopped or slow only means its list is as old as the last one taken (and a
 * hand-over token lives 15 minutes at most). Failures are logged when a peer starts failing and
 * when it answers again, not at every pull. The timer is unref'd: it never keeps a process alive.
 */
import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../log/index.ts';
import { MAX_DOCUMENT_BYTES } from './document.ts';
import type { Peer } from './peers.ts';

export interface Fetched {
  body: Buffer;
  signature: string | undefined;
}

/** GET `url`: a 200's body and Signature header; rejects for anything else, past `timeoutMs`, or on `signal`. */
export function fetchDocument(url: string, timeoutMs: number, signal?: AbortSignal): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const request = get(url, { headers: { Accept: 'application/json' }, timeout: timeoutMs, signal }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_DOCUMENT_BYTES) request.destroy(new Error(`larger than ${MAX_DOCUMENT_BYTES} bytes`));
        else chunks.push(chunk);
      });
      response.on('end', () => {
        if (response.statusCode !== 200) reject(new Error(`HTTP ${response.statusCode} ${response.headers.error ?? ''}`.trim()));
        else resolve({ body: Buffer.concat(chunks), signature: typeof response.headers.signature === 'string' ? response.headers.signature : undefined });
      });
      response.on('error', reject);
    });
    // `timeout` fires on an idle socket: a peer that accepts and then says nothing (SIGSTOP) included.
    const deadline = setTimeout(() => request.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
    request.on('close', () => clearTimeout(deadline));
  });
}

export class RevocationPuller {
  private timer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private readonly failing = new Set<string>();
  private running: Promise<void> | undefined;

  constructor(
    private readonly peers: () => Iterable<Peer>,
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
    private readonly log: Logger,
    /** Check and apply one peer's list; throws when it is refused. */
    private readonly take: (peer: Peer, fetched: Fetched) => Promise<void>,
  ) {}

  start(): void {
    if (this.timer || this.abort.signal.aborted) return;
    const tick = (): void => {
      this.running = this.pullAll().finally(() => {
        this.running = undefined;
        if (!this.abort.signal.aborted) this.timer = setTimeout(tick, this.intervalMs).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One pull of every peer with a list, at once; resolves when all have answered or failed. */
  async pullAll(): Promise<void> {
    const peers = [...this.peers()].filter((peer): peer is Peer & { revocations: string } => peer.revocations !== undefined);
    await Promise.all(peers.map((peer) => this.pull(peer)));
  }

  private async pull(peer: Peer & { revocations: string }): Promise<void> {
    try {
      await this.take(peer, await fetchDocument(peer.revocations, this.timeoutMs, this.abort.signal));
      if (this.failing.delete(peer.name)) this.log.info({ peer: peer.name }, 'revocation list pulled again');
    } catch (err) {
      if (this.abort.signal.aborted) return;
      if (!this.failing.has(peer.name)) this.log.warn({ err, peer: peer.name, url: peer.revocations }, 'pulling a revocation list failed: its parents’ ends wait for the next pull');
      else this.log.debug({ err, peer: peer.name }, 'pulling a revocation list failed again');
      this.failing.add(peer.name);
    }
  }
}
