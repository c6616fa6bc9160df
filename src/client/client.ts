import { startOpen, type AppIdentity, type PendingOpen } from '../seal/instance.ts';
import { proofHeaders } from '../seal/proof.ts';
import { getHeader, type Header, type RequestFrame, type ResponseFrame } from '../wire/index.ts';
import { errorFor, RotorClientError, SESSION_ENDING, TlsCertificateError, TransportError } from './errors.ts';
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

export interface OpenSealedOptions {
  /** The session's initial metadata (a JSON object), as at a login. */
  meta?: Record<string, unknown> | undefined;
}

export interface RequestOptions {
  body?: Buffer | string | undefined;
  contentType?: string | undefined;
  headers?: Record<string, string> | undefined;
}

/** A sealed session's secret and where it stands (spec §12): the session key, and the `Seal-Nonce` that came with the newest token. */
interface Seal {
  readonly key: Buffer;
  nonce: string | undefined;
}

const SEAL_PATH = '/rotor/seal';

/**
 * A rotor client: logs in (or opens a sealed session), always holds the newest token, and
 * survives a lost response by sending the same request with the same token again (the server
 * answers it from its replay copy, so nothing is done twice). Reuse, expiry and revocation
 * surface as typed errors and leave the client without a token.
 */
/**
 * Refusals without a Token that the same bytes get everywhere, every time (spec §12): a sealed
 * request refused so is settled. After any other refusal without a Token (the store down, a
 * timeout, a limit, a server going down…) it stays owed, and is sent again before anything else
 * goes under its token; a refusal that ends the session settles it too.
 */
const FINAL_REFUSALS = new Set([
  'ROTOR_E_BAD_REQUEST', 'ROTOR_E_NOT_FOUND', 'ROTOR_E_METHOD_NOT_ALLOWED', 'ROTOR_E_TOKEN_MISSING',
  'ROTOR_E_SEAL_PROOF_MISSING', 'ROTOR_E_SEAL_PROOF_WRONG', 'ROTOR_E_SEAL_NONCE_WRONG', 'ROTOR_E_SEAL_BODY_CHANGED', 'ROTOR_E_SEAL_REPLAYED',
  ...SESSION_ENDING,
]);

export class RotorClient {
  private transport: ClientTransport | undefined;
  private connecting: Promise<ClientTransport> | undefined;
  private current: string | undefined;
  /** Set while the session is a sealed one (spec §12). */
  private seal: Seal | undefined;
  /**
   * A sealed session's request sent under the newest token that has had no reply yet: the only
   * request that token may carry until its reply comes (spec §12 "One request per token").
   */
  private unanswered: RequestFrame | undefined;
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

  /** Whether the client holds a sealed session (spec §12): every request it sends carries a `Seal-Proof`. */
  get sealed(): boolean {
    return this.seal !== undefined;
  }

  /**
   * Start from a token saved earlier (resume after a restart of the client). A token alone is
   * no sealed session (its key is not in it): a client that held one forgets it.
   */
  async useToken(token: string | undefined): Promise<void> {
    await this.startOver(token);
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

  /**
   * Open a sealed session (spec §12) as `identity`, an instance of an app: an open nonce
   * (`GET /rotor/seal`), the open signed by the app key (`POST /rotor/seal`), the session key from
   * the reply's `Seal-Key`, and at once the confirmation (`POST /rotor/ack` with the first
   * proof), which seals the session. From then on every request of this client carries a
   * `Seal-Proof`. A lost open reply is not sent again as it was (its nonce is spent): the open
   * starts over with a new nonce. Resolves with the open's reply.
   */
  openSealed(identity: AppIdentity, options: OpenSealedOptions = {}): Promise<RotorResponse> {
    const body = jsonBody(options.meta);
    return this.serial(async () => {
      const { open, reply } = await this.retrying(async (transport) => {
        const nonce = await transport.request(requestFrame('GET', SEAL_PATH, [], undefined));
        const openNonce = getHeader(nonce, 'Seal-Nonce');
        if (openNonce === undefined) return { open: undefined, reply: nonce };
        const open = startOpen(identity, openNonce, undefined, body);
        return { open, reply: await transport.request(requestFrame('POST', SEAL_PATH, open.headers, body)) };
      });
      const response = await this.settle(reply, true);
      const key = open === undefined ? undefined : sessionKeyOf(open, response.header('Seal-Key'));
      const nonce = response.header('Seal-Nonce');
      if (key === undefined || nonce === undefined || this.current === undefined) {
        await this.startOver(undefined);
        throw new RotorClientError('ROTOR_E_SEAL_INVALID', response.status, 'the open reply has no usable Token, Seal-Nonce or Seal-Key');
      }
      this.seal = { key, nonce };
      try {
        await this.exchange('POST', '/rotor/ack', [], undefined, true);
      } catch (err) {
        // A refused confirmation (another key: a Seal-Key changed on the way) leaves a session this client cannot use.
        if (!(err instanceof TransportError)) await this.startOver(undefined);
        throw err;
      }
      return response;
    });
  }

  /**
   * In a sealed session, after a request failed with a TransportError (its reply lost on every
   * try): send that request again, byte for byte, and resolve with its reply — the reply it got,
   * if it reached the server. Undefined when no request is waiting for its reply. The client's
   * next request does the same first (dropping that reply), so no other request ever goes under
   * a token whose request had no answer.
   */
  recover(): Promise<RotorResponse | undefined> {
    return this.serial(async () => (this.unanswered === undefined ? undefined : this.answer(this.unanswered)));
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
    await this.startOver(undefined);
  }

  /** Delete the token and its metadata (note 004's DELETE /token). */
  async deleteToken(): Promise<void> {
    await this.serial(() => this.exchange('DELETE', '/rotor/token', [], undefined, true));
    await this.startOver(undefined);
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

  /** An exchange: with the newest token (and in a sealed session its proof), or one that starts a session (a login). */
  private async exchange(verb: string, path: string, headers: Header[], body: Buffer | undefined, withToken: boolean): Promise<RotorResponse> {
    if (!withToken) return this.settle(await this.send(requestFrame(verb, path, headers, body)), true);
    if (this.unanswered !== undefined) {
      // The reply belongs to a call that has failed already; only a session it ended stops this one.
      try {
        await this.answer(this.unanswered);
      } catch (err) {
        // Still owed (lost again, or refused for now): nothing else may go under its token yet.
        if (err instanceof TransportError || this.current === undefined || this.unanswered !== undefined) throw err;
      }
    }
    if (!this.current) throw errorFor('ROTOR_E_TOKEN_MISSING', 401, 'not logged in');
    const own = this.asSent(headers);
    return this.answer(requestFrame(verb, path, [['Token', this.current], ...this.proof(verb, path, body, own), ...own], body));
  }

  /** The proof of a request of a sealed session (spec §12), over the verb, path, body and headers that go on the wire; none for another session. */
  private proof(verb: string, path: string, body: Buffer | undefined, headers: readonly Header[]): Header[] {
    if (this.seal === undefined) return [];
    if (this.seal.nonce === undefined) throw new RotorClientError('ROTOR_E_SEAL_PROOF_MISSING', 0, 'the newest token of this sealed session came without its Seal-Nonce');
    return proofHeaders(this.seal.key, this.seal.nonce, verb, path, body, headers);
  }

  /** A sealed request's own headers as the wire keeps them (spec §1: blanks around a value are not part of it), so the proof covers what arrives. */
  private asSent(headers: Header[]): Header[] {
    return this.seal === undefined ? headers : headers.map(([name, value]): Header => [name, value.replace(/^[ \t]+|[ \t]+$/g, '')]);
  }

  /**
   * Send a request under the newest token and take its reply. In a sealed session it stays the
   * token's one request until a reply comes: lost on every try, it is what goes next, as it was.
   */
  private async answer(frame: RequestFrame): Promise<RotorResponse> {
    if (this.seal !== undefined) this.unanswered = frame;
    let response: ResponseFrame;
    try {
      response = await this.send(frame);
    } catch (err) {
      // Only a lost reply leaves the request owed: a refused certificate or frame never left.
      if (!(err instanceof TransportError) || err instanceof TlsCertificateError) this.unanswered = undefined;
      throw err;
    }
    // A refusal that may pass when sent again leaves a sealed request owed as well (spec §12):
    // sent under its token, a different request would make a copy of this one look like a clone's.
    const code = getHeader(response, 'Error');
    if (code === undefined || FINAL_REFUSALS.has(code) || getHeader(response, 'Token') !== undefined) this.unanswered = undefined;
    return this.settle(response, false);
  }

  /**
   * Take a reply's `Token` — in a sealed session with its `Seal-Nonce`; a reply without Token
   * keeps both — then its answer, or its error thrown. A Token from a reply that `starts` a
   * session (a login, an open) belongs to a new session: any seal of the last one is dropped.
   */
  private async settle(response: ResponseFrame, starts: boolean): Promise<RotorResponse> {
    const next = getHeader(response, 'Token');
    if (next) {
      if (starts) {
        this.seal = undefined;
        this.unanswered = undefined;
      } else if (this.seal !== undefined) this.seal.nonce = getHeader(response, 'Seal-Nonce');
      await this.setToken(next);
    }
    const code = getHeader(response, 'Error');
    if (code) {
      if (SESSION_ENDING.has(code)) await this.startOver(undefined);
      throw errorFor(code, response.status, response.body?.toString('utf8') || undefined);
    }
    return toResponse(response);
  }

  /** Send, and on a lost response send the identical frame again: the server replays. */
  private send(frame: RequestFrame): Promise<ResponseFrame> {
    return this.retrying((transport) => transport.request(frame));
  }

  /** Run `attempt` on a connection; when a response is lost, again on a new one, up to `retries` times. */
  private async retrying<T>(attempt: (transport: ClientTransport) => Promise<T>): Promise<T> {
    let lastError: Error | undefined;
    for (let tries = 0; tries <= this.retries; tries++) {
      if (tries > 0) await sleep(this.retryDelayMs * tries);
      try {
        return await attempt(await this.connection());
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

  /** Hold `token` and nothing else of the session before: no seal, no request owed. */
  private async startOver(token: string | undefined): Promise<void> {
    this.seal = undefined;
    this.unanswered = undefined;
    await this.setToken(token);
  }
}

function requestFrame(verb: string, path: string, headers: readonly Header[], body: Buffer | undefined): RequestFrame {
  return { kind: 'request', verb, path, headers, body };
}

/** The session key from an open reply's `Seal-Key`; undefined when it is missing or unusable (a hostile server's point). */
function sessionKeyOf(open: PendingOpen, serverKey: string | undefined): Buffer | undefined {
  if (serverKey === undefined) return undefined;
  try {
    return open.sessionKey(serverKey);
  } catch {
    return undefined;
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
