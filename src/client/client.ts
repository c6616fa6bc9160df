import { getHeader, type Header, type RequestFrame, type ResponseFrame } from '../wire/index.ts';
import { errorFor, SESSION_ENDING, TlsCertificateError, TransportError } from './errors.ts';
import type { ClientTransport, Connect } from './transport.ts';

export interface RotorResponse {
  status: number;
  headers: readonly Header[];
  header(name: string): string | undefined;
  body: Buffer;
  /** Task ids when the exchange deferred work (202). */
  tasks: string[];
  /** The server's estimate, in seconds, of when to ask again. */
  waitFor: number | undefined;
  /** The reply sends the client on to a peer (spec §11): its address (`Out-of-band`) and a token for a login there (`Hand-over`). */
  handOver: HandOverTarget | undefined;
}

/** Where a reply hands the client over to, and the token it logs in there with (once, within 15 minutes). */
export interface HandOverTarget {
  readonly address: string;
  readonly token: string;
}

export interface ClientOptions {
  connect: Connect;
  /** Times a request is sent again, with the same token, after a lost response. */
  retries?: number | undefined;
  retryDelayMs?: number | undefined;
  /** Called with every new token, before it is used or acked (persist it here). */
  onToken?: (token: string | undefined) => void | Promise<void>;
}

export interface RequestOptions {
  body?: Buffer | string | undefined;
  contentType?: string | undefined;
  headers?: Record<string, string> | undefined;
}

/**
 * A rotor client: logs in, always holds the newest token, and survives a lost response by
 * sending the same request with the same token again (the server answers it from its replay
 * copy, so nothing is done twice). Reuse, expiry and revocation surface as typed errors and
 * leave the client without a token.
 */
export class RotorClient {
  private transport: ClientTransport | undefined;
  private connecting: Promise<ClientTransport> | undefined;
  private current: string | undefined;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private busy: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ClientOptions) {
    this.retries = options.retries ?? 3;
    this.retryDelayMs = options.retryDelayMs ?? 100;
  }

  /** The newest token this client holds. */
  get token(): string | undefined {
    return this.current;
  }

  /** Start from a token saved earlier (resume after a restart of the client). */
  async useToken(token: string | undefined): Promise<void> {
    await this.setToken(token);
  }

  login(user: string, password: string, options: { totp?: string | undefined; meta?: Record<string, unknown> | undefined } = {}): Promise<RotorResponse> {
    const headers: Header[] = [['User', user], ['Password', password]];
    if (options.totp) headers.push(['TOTP', options.totp]);
    return this.serial(async () => {
      const response = await this.exchange('POST', '/rotor/login', headers, jsonBody(options.meta), false);
      // A TOTP login sent again gets the same token while that token is unused (spec §3), so
      // anyone with the password and this code could hold it too: use it at once.
      if (options.totp) await this.exchange('POST', '/rotor/ack', [], undefined, true);
      return response;
    });
  }

  /**
   * Log in with an access code (spec §10); with `user` and `password`, a code issued to that
   * user. A code login sent again gets the same token while it is unused, so it is used at once.
   */
  loginWithCode(code: string, options: { user?: string; password?: string; meta?: Record<string, unknown> | undefined } = {}): Promise<RotorResponse> {
    const headers: Header[] = options.user !== undefined ? [['User', options.user], ['Password', options.password ?? ''], ['Code', code]] : [['Code', code]];
    return this.serial(async () => {
      const response = await this.exchange('POST', '/rotor/login', headers, jsonBody(options.meta), false);
      await this.exchange('POST', '/rotor/ack', [], undefined, true);
      return response;
    });
  }

  /**
   * Log in with a hand-over token (spec §11) that a reply of `home` (the issuing server's name)
   * carried: a session of this server, linked to that one. The token works once: a login whose
   * reply was lost needs a new hand-over from home.
   */
  loginWithHandOver(token: string, home: string, options: { meta?: Record<string, unknown> | undefined } = {}): Promise<RotorResponse> {
    return this.serial(() => this.exchange('POST', '/rotor/login', [['Hand-over', token], ['Home', home]], jsonBody(options.meta), false));
  }

  /** What the session's access code has spent and has left (spec §10): the JSON of GET /rotor/quota. */
  async quota(): Promise<Record<string, unknown>> {
    const response = await this.serial(() => this.exchange('GET', '/rotor/quota', [], undefined, true));
    return JSON.parse(response.body.toString('utf8')) as Record<string, unknown>;
  }

  /** A message to an application path; the reply carries the next token. */
  request(verb: string, path: string, options: RequestOptions = {}): Promise<RotorResponse> {
    const headers: Header[] = [];
    if (options.contentType) headers.push(['Content-Type', options.contentType]);
    for (const [name, value] of Object.entries(options.headers ?? {})) headers.push([name, value]);
    const body = typeof options.body === 'string' ? Buffer.from(options.body) : options.body;
    return this.serial(() => this.exchange(verb, path, headers, body, true));
  }

  /** Show the server we hold the newest token: releases the work the last exchange deferred. */
  ack(): Promise<RotorResponse> {
    return this.serial(() => this.exchange('POST', '/rotor/ack', [], undefined, true));
  }

  /** Rotate without a message (login with a token, e.g. after reconnecting). */
  resume(): Promise<RotorResponse> {
    return this.serial(() => this.exchange('POST', '/rotor/resume', [], undefined, true));
  }

  /** Merge keys into the session's metadata; the reply body is the whole metadata as JSON. */
  exchangeMeta(merge: Record<string, unknown> = {}): Promise<RotorResponse> {
    return this.serial(() => this.exchange('PUT', '/rotor/token', [['Content-Type', 'application/json']], jsonBody(merge), true));
  }

  /** Fetch a deferred task's result: 200 with the result, 202 while it runs. */
  task(id: string): Promise<RotorResponse> {
    return this.serial(() => this.exchange('GET', `/rotor/tasks/${id}`, [], undefined, true));
  }

  /** Ask for a task's result until it is there (acks first, so the task may start). */
  async waitForTask(id: string, options: { timeoutMs?: number | undefined } = {}): Promise<RotorResponse> {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      const response = await this.task(id);
      if (response.status !== 202) return response;
      if (Date.now() > deadline) throw new TransportError(`task ${id} not finished in time`);
      await sleep(Math.min(1000, Math.max(20, (response.waitFor ?? 1) * 100)));
    }
  }

  async logout(): Promise<void> {
    await this.serial(() => this.exchange('POST', '/rotor/logout', [], undefined, true));
    await this.setToken(undefined);
  }

  /** Delete the token and its metadata (note 004's DELETE /token). */
  async deleteToken(): Promise<void> {
    await this.serial(() => this.exchange('DELETE', '/rotor/token', [], undefined, true));
    await this.setToken(undefined);
  }

  close(): void {
    this.transport?.close();
    this.transport = undefined;
  }

  /** One exchange at a time: each request needs the token the previous one returned. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.busy.then(work, work);
    this.busy = run.catch(() => undefined);
    return run;
  }

  private async exchange(verb: string, path: string, headers: Header[], body: Buffer | undefined, withToken: boolean): Promise<RotorResponse> {
    if (withToken) {
      if (!this.current) throw errorFor('ROTOR_E_TOKEN_MISSING', 401, 'not logged in');
      headers = [['Token', this.current], ...headers];
    }
    const frame: RequestFrame = { kind: 'request', verb, path, headers, body };
    const response = await this.send(frame);
    const next = getHeader(response, 'Token');
    if (next) await this.setToken(next);
    const code = getHeader(response, 'Error');
    if (code) {
      if (SESSION_ENDING.has(code)) await this.setToken(undefined);
      throw errorFor(code, response.status, response.body?.toString('utf8') || undefined);
    }
    return toResponse(response);
  }

  /** Send, and on a lost response send the identical frame again: the server replays. */
  private async send(frame: RequestFrame): Promise<ResponseFrame> {
    let lastError: Error | undefined;
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      if (attempt > 0) await sleep(this.retryDelayMs * attempt);
      try {
        const transport = await this.connection();
        return await transport.request(frame);
      } catch (err) {
        // A refused certificate is refused again: nothing reached the server, so nothing to replay either.
        if (!(err instanceof TransportError) || err instanceof TlsCertificateError) throw err;
        lastError = err;
        this.transport?.close();
        this.transport = undefined;
      }
    }
    throw lastError ?? new TransportError('request failed');
  }

  private async connection(): Promise<ClientTransport> {
    if (this.transport) return this.transport;
    this.connecting ??= this.options.connect().finally(() => (this.connecting = undefined));
    this.transport = await this.connecting;
    return this.transport;
  }

  private async setToken(token: string | undefined): Promise<void> {
    this.current = token;
    await this.options.onToken?.(token);
  }
}

function jsonBody(value: Record<string, unknown> | undefined): Buffer | undefined {
  return value === undefined ? undefined : Buffer.from(JSON.stringify(value));
}

function toResponse(frame: ResponseFrame): RotorResponse {
  const task = getHeader(frame, 'Task');
  const wait = getHeader(frame, 'Wait-for');
  const address = getHeader(frame, 'Out-of-band');
  const handOver = getHeader(frame, 'Hand-over');
  return {
    status: frame.status,
    headers: frame.headers,
    header: (name) => getHeader(frame, name),
    body: frame.body ?? Buffer.alloc(0),
    tasks: task ? task.split(',') : [],
    waitFor: wait === undefined ? undefined : Number(wait),
    handOver: address !== undefined && handOver !== undefined ? { address, token: handOver } : undefined,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
