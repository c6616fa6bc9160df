/**
 * Note 004's token-server REST API (a drop-in for HaKr/token_server), served by the HTTP
 * listener on /token and /dump when enabled. It has no logic of its own: each call becomes the
 * rotor frame that does the same thing and goes through `rotor.dispatch`, so the token dies on
 * exchange, a repeated PUT with the same old token gets the rotor replay, and presenting a
 * rotated-away token revokes the session. docs/rest.md says where this is stricter than the
 * original and why.
 *
 *   POST   /token  {"meta": {…}}                → 200 text/plain: the new token
 *   PUT    /token  {"token": "…", "meta"?: {…}} → 200 {"Ok": {"token", "meta"}} | 200 {"Err": "InvalidToken"}
 *   DELETE /token  {"token": "…"}               → 202
 *   HEAD   /dump                                → 202, every live session's metadata and expiry to the log
 *
 * Bodies must be `application/json` (else 415), parse (else 400) and have the shape above
 * (else 422), as with the original's JSON extractor.
 */
import { endReasonOf } from '../quotas/ledger.ts';
import { ConfigError, type RotorConfig } from '../config/defaults.ts';
import type { Logger } from '../log/index.ts';
import type { Store } from '../store/types.ts';
import { getHeader, type Header, type RequestFrame, type ResponseFrame } from '../wire/index.ts';
import type { FrameHandler } from './connection.ts';

/** An HTTP answer the listener writes as it is. */
export interface HttpAnswer {
  status: number;
  headers: Header[];
  body?: Buffer;
}

export interface RestRequest {
  method: string;
  /** The request target (a query string is ignored, as by the original). */
  url: string;
  contentType: string | undefined;
  body: Buffer | undefined;
}

export interface TokenApiOptions {
  /** Enable `HEAD /dump` (the original's `--dump`); off by default: the dump writes every session's metadata to the log. */
  dump?: boolean;
  now?: () => number;
}

/** Rotor codes that the original API reports as `{"Err": "InvalidToken"}`: the token cannot be used, whatever the reason. */
const INVALID_TOKEN = new Set([
  'ROTOR_E_TOKEN_MISSING',
  'ROTOR_E_TOKEN_INVALID',
  'ROTOR_E_TOKEN_EXPIRED',
  'ROTOR_E_SESSION_UNKNOWN',
  'ROTOR_E_TOKEN_REUSED',
  'ROTOR_E_SESSION_REVOKED',
]);

/** A token that can travel in a rotor header at all; anything else is invalid without asking the store. */
const TOKEN_TEXT = /^[\x21-\x7e]{1,1024}$/;
const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain; charset=utf-8';
const DUMP_BATCH = 1000;

/** One session in the dump: note 004's fields, and a metered session's quota (spec §10). */
interface DumpEntry {
  expires: string | null;
  user?: string;
  meta: unknown;
  quota?: { template: string; bytesIn: number; bytesOut: number };
  /** A metered session that has ended (spec §10): when, and why — the limit, logout, deleted, reuse, revoked, replaced. */
  ended?: { at: string; reason: string };
}

/** The ranges of note 004: token lifetime 30 min–96 h, purge interval 1 s–90 min. */
export const TOKEN_API_RANGES = Object.freeze({
  tokenTtlMinutes: [30, 96 * 60] as const,
  purgeIntervalMs: [1_000, 90 * 60_000] as const,
});

/** Throws ConfigError unless the config suits the token API (its lifetime and purge ranges, open token creation). */
export function checkTokenApiConfig(config: RotorConfig): void {
  const { tokenTtlMinutes, purgeIntervalMs, openTokenCreate } = config.session;
  const [minTtl, maxTtl] = TOKEN_API_RANGES.tokenTtlMinutes;
  if (tokenTtlMinutes < minTtl || tokenTtlMinutes > maxTtl) {
    throw new ConfigError(`the token API needs a token lifetime from 30 min to 96 h, got ${tokenTtlMinutes} min`);
  }
  const [minPurge, maxPurge] = TOKEN_API_RANGES.purgeIntervalMs;
  if (purgeIntervalMs < minPurge || purgeIntervalMs > maxPurge) {
    throw new ConfigError(`the token API needs a purge interval from 1 s to 90 min, got ${purgeIntervalMs} ms`);
  }
  if (!openTokenCreate) throw new ConfigError('the token API needs session.openTokenCreate (POST /token creates tokens without a login)');
}

// Note 004's options take rotor's one duration syntax; re-exported for the callers that know it from here.
export { parseDuration } from '../config/duration.ts';

export class TokenApi {
  private readonly dumpEnabled: boolean;
  private readonly now: () => number;
  private dumping: Promise<void> | undefined;

  constructor(
    private readonly handler: FrameHandler,
    private readonly store: Store,
    private readonly log: Logger,
    options: TokenApiOptions = {},
  ) {
    this.dumpEnabled = options.dump ?? false;
    this.now = options.now ?? Date.now;
  }

  /** Whether a request target belongs to this API rather than to rotor's HTTP mapping. */
  owns(url: string): boolean {
    const path = pathOf(url);
    return path === '/token' || path === '/dump';
  }

  async handle(request: RestRequest): Promise<HttpAnswer> {
    if (pathOf(request.url) === '/dump') {
      if (!this.dumpEnabled) return text(404, 'HEAD /dump is not enabled', 'ROTOR_E_NOT_FOUND');
      if (request.method !== 'HEAD') return notAllowed('HEAD');
      await (this.dumping ??= this.dump().finally(() => (this.dumping = undefined)));
      return { status: 202, headers: [] };
    }
    switch (request.method) {
      case 'POST':
        return this.create(request);
      case 'PUT':
        return this.exchange(request);
      case 'DELETE':
        return this.remove(request);
      default:
        return notAllowed('POST, PUT, DELETE');
    }
  }

  private async create(request: RestRequest): Promise<HttpAnswer> {
    const json = readJson(request);
    if ('status' in json) return json;
    const meta = isObject(json.value) ? json.value.meta : undefined;
    if (!isObject(meta)) return shapeError('want {"meta": {…}} with meta a JSON object');
    const reply = await this.send('POST', '/rotor/token', [], meta);
    const token = getHeader(reply, 'Token');
    if (reply.status === 200 && token) return { status: 200, headers: [['Content-Type', TEXT_TYPE]], body: Buffer.from(token) };
    return failure(reply);
  }

  private async exchange(request: RestRequest): Promise<HttpAnswer> {
    const json = readJson(request);
    if ('status' in json) return json;
    const value = json.value;
    if (!isObject(value) || typeof value.token !== 'string') return shapeError('want {"token": "…", "meta": {…}} with token a string');
    const meta = value.meta ?? {};
    if (!isObject(meta)) return shapeError('meta must be a JSON object when present');
    if (!TOKEN_TEXT.test(value.token)) return invalidToken();
    const reply = await this.send('PUT', '/rotor/token', [['Token', value.token]], meta);
    const code = getHeader(reply, 'Error');
    const token = getHeader(reply, 'Token');
    if (code === undefined && reply.status === 200 && token) {
      // Built from the reply bytes as they are, so a replayed reply gives the identical answer.
      const body = `{"Ok":{"token":${JSON.stringify(token)},"meta":${metaJson(reply)}}}`;
      return { status: 200, headers: [['Token', token], ['Content-Type', JSON_TYPE]], body: Buffer.from(body) };
    }
    if (code !== undefined && INVALID_TOKEN.has(code)) return invalidToken(code);
    // Anything else (the store is down, the merged metadata is too large…): the rotor code, and
    // the new token if the exchange rotated anyway — without it the session would be lost.
    const headers: Header[] = [['Error', code ?? 'ROTOR_E_INTERNAL'], ['Content-Type', JSON_TYPE]];
    if (token) headers.push(['Token', token]);
    return { status: reply.status, headers, body: Buffer.from(JSON.stringify({ Err: code ?? 'ROTOR_E_INTERNAL' })) };
  }

  private async remove(request: RestRequest): Promise<HttpAnswer> {
    const json = readJson(request);
    if ('status' in json) return json;
    const value = json.value;
    if (!isObject(value) || typeof value.token !== 'string') return shapeError('want {"token": "…"}');
    if (!TOKEN_TEXT.test(value.token)) return { status: 202, headers: [['Error', 'ROTOR_E_TOKEN_INVALID']] };
    // With the token before the newest (its successor's reply was lost), rotor ends the session
    // itself and cancels the work that reply held: nothing the client never acknowledged runs.
    const reply = await this.send('DELETE', '/rotor/token', [['Token', value.token]]);
    const code = getHeader(reply, 'Error');
    if (reply.status === 202) return { status: 202, headers: [] };
    // Like the original, deleting a token that is already unusable succeeds: it is gone either way.
    if (code !== undefined && INVALID_TOKEN.has(code)) return { status: 202, headers: [['Error', code]] };
    return failure(reply);
  }

  /**
   * Every live session's metadata and expiry to the log, in batches (revoked ones are left out);
   * a session opened with an access code also its quota's template and bytes used so far — and,
   * once it has ended, when and why (spec §10: the logout reason is kept and visible). A store
   * without listSessions says so.
   */
  private async dump(): Promise<void> {
    if (!this.store.listSessions) {
      this.log.warn({ store: this.store.kind }, 'DUMP: this store cannot list its sessions; nothing dumped');
      return;
    }
    const now = this.now();
    let batch: DumpEntry[] = [];
    let sessions = 0;
    let part = 0;
    for await (const session of this.store.listSessions()) {
      const quota = session.quota;
      // A metered session's record outlives its token (it is its code's ledger): its token's expiry is what tells it is live.
      const expiresAt = quota ? quota.tokenExpiresAt : session.expiresAt;
      if (quota === null && session.revoked) continue;
      if (!session.revoked && expiresAt !== null && expiresAt <= now) continue;
      sessions++;
      const expires = expiresAt === null ? null : new Date(expiresAt).toISOString();
      const entry: DumpEntry = session.user ? { expires, user: session.user, meta: session.meta } : { expires, meta: session.meta };
      if (quota) entry.quota = { template: quota.template, bytesIn: quota.bytesIn, bytesOut: quota.bytesOut };
      if (session.revoked) entry.ended = { at: new Date(session.revoked.at).toISOString(), reason: endReasonOf(session) };
      batch.push(entry);
      if (batch.length === DUMP_BATCH) {
        this.log.info({ dump: batch, part: ++part }, 'DUMP');
        batch = [];
      }
    }
    this.log.info({ dump: batch, part: ++part, last: true, sessions }, 'DUMP');
  }

  private async send(verb: string, path: string, headers: Header[], meta?: Record<string, unknown>): Promise<ResponseFrame> {
    const frame: RequestFrame =
      meta === undefined
        ? { kind: 'request', verb, path, headers, body: undefined }
        : { kind: 'request', verb, path, headers: [...headers, ['Content-Type', JSON_TYPE]], body: Buffer.from(JSON.stringify(meta)) };
    return (await this.handler.dispatch(frame)).frame;
  }
}

/**
 * The metadata JSON of an exchange reply. A replay answers with the reply of whatever the
 * previous token did last; when that was not a metadata exchange (the session is also used over
 * another carrier), there is no metadata to show: null.
 */
function metaJson(reply: ResponseFrame): string {
  const type = getHeader(reply, 'Content-Type');
  if (!reply.body || !isJsonType(type)) return 'null';
  const text = reply.body.toString('utf8');
  try {
    return isObject(JSON.parse(text)) ? text : 'null';
  } catch {
    return 'null';
  }
}

function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isJsonType(type: string | undefined): boolean {
  if (type === undefined) return false;
  const essence = type.split(';')[0].trim().toLowerCase();
  return essence === JSON_TYPE || /^application\/[!#$&^_.+a-z0-9-]+\+json$/.test(essence);
}

function readJson(request: RestRequest): { value: unknown } | HttpAnswer {
  if (!isJsonType(request.contentType)) return text(415, 'Expected request with `Content-Type: application/json`', 'ROTOR_E_BAD_REQUEST');
  try {
    return { value: JSON.parse((request.body ?? Buffer.alloc(0)).toString('utf8')) };
  } catch {
    return text(400, 'Failed to parse the request body as JSON', 'ROTOR_E_BAD_REQUEST');
  }
}

function text(status: number, message: string, code: string): HttpAnswer {
  return { status, headers: [['Error', code], ['Content-Type', TEXT_TYPE]], body: Buffer.from(`${message}\n`) };
}

function shapeError(message: string): HttpAnswer {
  return text(422, `Failed to deserialize the JSON body into the target type: ${message}`, 'ROTOR_E_BAD_REQUEST');
}

function notAllowed(allow: string): HttpAnswer {
  return { status: 405, headers: [['Allow', allow], ['Error', 'ROTOR_E_METHOD_NOT_ALLOWED']] };
}

function invalidToken(code = 'ROTOR_E_TOKEN_INVALID'): HttpAnswer {
  return { status: 200, headers: [['Error', code], ['Content-Type', JSON_TYPE]], body: Buffer.from('{"Err":"InvalidToken"}') };
}

/** A rotor refusal as text: its status, its code, and the new token if it carried one. */
function failure(reply: ResponseFrame): HttpAnswer {
  const code = getHeader(reply, 'Error') ?? 'ROTOR_E_INTERNAL';
  const answer = text(reply.status, code, code);
  const token = getHeader(reply, 'Token');
  if (token) answer.headers.push(['Token', token]);
  return answer;
}
