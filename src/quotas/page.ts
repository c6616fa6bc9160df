/**
 * The login page (note 002, spec §10 "The login page"): a small HTML form, served by the HTTP
 * carrier at `/rotor/portal`, where a person types an access code (or a user name and password)
 * and sees what the code has left. It works without JavaScript and loads nothing: one page, its
 * CSS inline, forms that post back to it.
 *
 * It holds no state and has no logic of rotor's: each press becomes the rotor frames a native
 * client would send — `POST /rotor/login`, then `GET /rotor/quota` (both for "Log in", so the page
 * can show what is left), `GET /rotor/quota` for "Check what is left", `POST /rotor/logout` — sent
 * through `dispatch`, the carrier's own dispatcher (so throttling by address, client binding,
 * metrics and logs apply as to any frame). The session's newest token travels in a hidden
 * `token` field of the page's two forms: each press is one token exchange, and the next token is
 * in the next page.
 *
 * Pure but for `dispatch`: a parsed request in, {status, headers, body} out.
 */
import { ERRORS, type ErrorCode } from '../errors.ts';
import { escapeHtml, HTML_TYPE } from '../transport/html.ts';
import { getHeader, type Header, type Reply, type RequestFrame, type ResponseFrame } from '../wire/index.ts';

export const PORTAL_PATH = '/rotor/portal';
/** A form body over this is refused with a 413 page: the fields the page has need a few hundred bytes. */
export const PORTAL_MAX_BODY = 4096;
/** The `Client-Info` of the page's frames: a token bound to the program (spec §2) is bound to the page. */
export const PORTAL_CLIENT = 'rotor-portal';

/** What the page needs of an HTTP request: its method, headers (`Host` among them) and body. */
export interface PortalRequest {
  method: string;
  headers: readonly Header[];
  body: Buffer | undefined;
}

export interface PortalAnswer {
  status: number;
  headers: Header[];
  body: Buffer;
}

export type PortalDispatch = (frame: RequestFrame) => Promise<Reply>;

/** Every answer of the page carries these (writers add Content-Length). */
export const PORTAL_HEADERS: readonly Header[] = Object.freeze([
  ['Content-Type', HTML_TYPE],
  ['Cache-Control', 'no-store'],
  ['Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"],
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'no-referrer'],
]);

/** Answer one request for the page. */
export async function portal(request: PortalRequest, dispatch: PortalDispatch): Promise<PortalAnswer> {
  const { method } = request;
  if (method === 'GET' || method === 'HEAD') return answer(200, loginPage({}));
  if (method !== 'POST') return answer(405, loginPage({ alert: 'This page takes only GET and POST.' }), [['Allow', 'GET, POST']]);
  if (crossSite(request.headers)) {
    return answer(403, loginPage({ alert: 'This form was sent from another web site, so it was refused. Open this page yourself and try again.' }));
  }
  const type = getHeader({ headers: request.headers }, 'Content-Type')?.split(';')[0].trim().toLowerCase();
  if (type !== FORM_TYPE) return answer(415, loginPage({ alert: 'This page takes only its own form. Try again.' }));
  const body = request.body ?? Buffer.alloc(0);
  if (body.length > PORTAL_MAX_BODY) return answer(413, loginPage({ alert: 'That was more than this form takes. Try again.' }));
  const form = new URLSearchParams(body.toString('utf8'));
  const action = form.get('action') ?? 'login';
  if (action === 'login') return logIn(form, dispatch);
  if (action === 'status' || action === 'logout') {
    const token = (form.get('token') ?? '').trim() || undefined;
    if (token !== undefined && !sendable(token)) return answer(400, loginPage({ alert: 'This page is damaged. Log in again.' }));
    return action === 'status' ? showQuota(dispatch, token, {}) : logOut(dispatch, token);
  }
  return answer(400, loginPage({ alert: 'This page is damaged. Log in again.' }));
}

const FORM_TYPE = 'application/x-www-form-urlencoded';

/**
 * A form post from another site (spec §10 "The login page"): a browser's `Sec-Fetch-Site` says
 * it is not from this origin, or its `Origin` is not the host the request was sent to. The page's
 * own `Referrer-Policy: no-referrer` makes a browser send `Origin: null` with its forms, so
 * `null` passes only where `Sec-Fetch-Site: same-origin` vouches for it. With neither header (no
 * browser) nothing is refused: another site's page cannot make such a request.
 */
function crossSite(headers: readonly Header[]): boolean {
  const site = getHeader({ headers }, 'Sec-Fetch-Site')?.toLowerCase();
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return true;
  const origin = getHeader({ headers }, 'Origin');
  if (origin === undefined || (origin === 'null' && site !== undefined)) return false;
  const host = getHeader({ headers }, 'Host');
  if (host === undefined) return true;
  try {
    return new URL(origin).host !== new URL(`http://${host}`).host;
  } catch {
    return true;
  }
}

/** What the person typed, shown again in the form after a refusal (never the password). */
interface Typed {
  code?: string | undefined;
  user?: string | undefined;
}

async function logIn(form: URLSearchParams, dispatch: PortalDispatch): Promise<PortalAnswer> {
  const code = (form.get('code') ?? '').trim();
  const user = (form.get('user') ?? '').trim();
  const password = form.get('password') ?? '';
  const totp = (form.get('totp') ?? '').trim();
  const typed: Typed = { code, user };
  if (code === '' && user === '') return answer(400, loginPage({ alert: 'Type your access code, or your user name and password.', typed }));
  if (user !== '' && password === '') return answer(400, loginPage({ alert: 'Type your password too.', typed }));
  const headers: Header[] = user === '' ? [] : [['User', user], ['Password', password]];
  if (code !== '') headers.push(['Code', code]);
  if (user !== '' && totp !== '') headers.push(['TOTP', totp]);
  if (!headers.every(([, value]) => sendable(value))) return answer(400, loginPage({ alert: 'What you typed has characters that cannot be used. Check it and try again.', typed }));
  const reply = await dispatch(frame('POST', '/rotor/login', headers));
  const token = getHeader(reply.frame, 'Token');
  if (token === undefined) return answer(reply.status, loginPage({ alert: refusalText(reply.frame), typed }));
  return showQuota(dispatch, token, typed);
}

/** A quota exchange: the session page with its numbers and the next token, or why not. */
async function showQuota(dispatch: PortalDispatch, token: string | undefined, typed: Typed): Promise<PortalAnswer> {
  const reply = await dispatch(frame('GET', '/rotor/quota', tokenHeader(token)));
  const held = heldToken(reply, token);
  if (held === undefined) return answer(reply.status, loginPage({ alert: refusalText(reply.frame), typed }));
  if (reply.status !== 200) return answer(reply.status, sessionPage(held, undefined, refusalText(reply.frame)));
  return answer(200, sessionPage(held, parseStatus(reply.frame.body)));
}

async function logOut(dispatch: PortalDispatch, token: string | undefined): Promise<PortalAnswer> {
  const reply = await dispatch(frame('POST', '/rotor/logout', tokenHeader(token)));
  if (reply.status === 200) return answer(200, loginPage({ heading: 'You are logged out', notice: 'Your session has ended. To go on, log in again.' }));
  const held = heldToken(reply, token);
  if (held !== undefined) return answer(reply.status, sessionPage(held, undefined, refusalText(reply.frame)));
  return answer(reply.status, loginPage({ alert: refusalText(reply.frame) }));
}

/** Refusals after which the token sent is no use: it is not (or no longer) this client's session's, or a limit ended the session. */
const TOKEN_DEAD: ReadonlySet<string> = new Set(['ROTOR_E_TOKEN_MISSING', 'ROTOR_E_TOKEN_INVALID', 'ROTOR_E_TOKEN_EXPIRED', 'ROTOR_E_SESSION_UNKNOWN', 'ROTOR_E_CLIENT_MISMATCH', 'ROTOR_E_TOKEN_REUSED', 'ROTOR_E_SESSION_REVOKED']);
const sessionOver = (code: ErrorCode) => TOKEN_DEAD.has(code) || code.startsWith('ROTOR_E_QUOTA_');

/**
 * The token the session page carries after `reply`: the next one when it rotated; the one sent
 * when it was refused for a passing reason (the store unavailable, a conflict: retry with the
 * same token, spec §5); none when the session is over.
 */
function heldToken(reply: Reply, sent: string | undefined): string | undefined {
  const next = getHeader(reply.frame, 'Token');
  if (next !== undefined) return next;
  const error = reply.error;
  return sent !== undefined && error !== undefined && !sessionOver(error) ? sent : undefined;
}

function tokenHeader(token: string | undefined): Header[] {
  return token === undefined ? [] : [['Token', token]];
}

function frame(verb: string, path: string, headers: Header[]): RequestFrame {
  return { kind: 'request', verb, path, headers: [...headers, ['Client-Info', PORTAL_CLIENT]], body: undefined };
}

/** A header value a frame may carry (spec §1): no control characters but HTAB, not empty. */
function sendable(value: string): boolean {
  return value !== '' && !/[\x00-\x08\x0a-\x1f\x7f]/.test(value);
}

function answer(status: number, page: Html, extra: Header[] = []): PortalAnswer {
  return { status, headers: [...PORTAL_HEADERS, ...extra], body: Buffer.from(page.text) };
}

// --- what a refusal says -------------------------------------------------------------------

type Wording = string | ((waitSeconds: number | undefined) => string);

const SESSION_OVER = 'Your session has ended. Log in again.';
const DATA_SPENT = 'Your data allowance is used up, so the session has ended. You need a new code.';

/** A sentence for each refusal a person can meet here; anything else gets the fallback, which names the code. */
const WORDING: Partial<Record<ErrorCode, Wording>> = {
  ROTOR_E_CODE_INVALID: 'This code is not valid. Check it and try again.',
  ROTOR_E_CODE_SPENT: 'This code is used up. You need a new code.',
  ROTOR_E_CODE_EXPIRED: 'This code has expired. You need a new code.',
  ROTOR_E_CODE_REVOKED: 'This code has been withdrawn. You need a new code.',
  ROTOR_E_CODE_IN_USE: (wait) => `This code is in use on another device. Log out there, or try again ${wait === undefined ? 'later' : `in ${minutes(wait)}`}.`,
  ROTOR_E_NODE_NOT_ALLOWED: 'This code cannot be used here. Use it where it was issued for.',
  ROTOR_E_RATE_LIMITED: (wait) => `Too many tries. ${wait === undefined ? 'Wait a while' : `Wait ${waitText(wait)}`} and try again.`,
  ROTOR_E_QUOTA_NEEDS_CODE: 'Your allowance is used up. Log in with a new access code.',
  ROTOR_E_QUOTA_BYTES_IN: DATA_SPENT,
  ROTOR_E_QUOTA_BYTES_OUT: DATA_SPENT,
  ROTOR_E_QUOTA_BYTES_TOTAL: DATA_SPENT,
  ROTOR_E_QUOTA_USAGE_TIME: 'Your time allowance is used up, so the session has ended. You need a new code.',
  ROTOR_E_QUOTA_CONNECTION_TIME: 'This session has lasted as long as it may. Log in again if your code allows it.',
  ROTOR_E_QUOTA_WALL_TIME: 'Your code has expired, so the session has ended. You need a new code.',
  ROTOR_E_QUOTA_AGE: 'Your code has expired, so the session has ended. You need a new code.',
  ROTOR_E_AUTH_FAILED: 'The user name or password is not right. Try again.',
  ROTOR_E_TOTP_REQUIRED: 'This account also needs the one-time code from its authenticator app.',
  ROTOR_E_TOKEN_MISSING: 'You are not logged in. Log in first.',
  ROTOR_E_TOKEN_INVALID: SESSION_OVER,
  ROTOR_E_TOKEN_EXPIRED: 'Your session has timed out. Log in again.',
  ROTOR_E_SESSION_UNKNOWN: SESSION_OVER,
  ROTOR_E_SESSION_REVOKED: SESSION_OVER,
  ROTOR_E_TOKEN_REUSED: 'This page was used twice (perhaps after going back), so for safety the session was ended. Log in again.',
  ROTOR_E_CLIENT_MISMATCH: 'This session belongs to another device or network. Log in again.',
};

export function refusalText(reply: ResponseFrame): string {
  const code = getHeader(reply, 'Error');
  const waitHeader = getHeader(reply, 'Wait-for');
  const wait = waitHeader !== undefined && /^\d{1,9}$/.test(waitHeader) ? Number(waitHeader) : undefined;
  const wording = code !== undefined && code in ERRORS ? WORDING[code as ErrorCode] : undefined;
  if (wording !== undefined) return typeof wording === 'string' ? wording : wording(wait);
  return `Something went wrong (${code ?? `status ${reply.status}`}). Try again later.`;
}

function minutes(seconds: number): string {
  const n = Math.max(1, Math.ceil(seconds / 60));
  return `about ${n} minute${n === 1 ? '' : 's'}`;
}

function waitText(seconds: number): string {
  if (seconds >= 60) return minutes(seconds);
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

// --- numbers for people ---------------------------------------------------------------------

const BYTE_UNITS = ['kB', 'MB', 'GB', 'TB', 'PB'];

/** Bytes in decimal units to three significant digits: 1_500_000_000 → "1.5 GB", 123_456 → "123 kB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return bytes === 1 ? '1 byte' : `${bytes} bytes`;
  let value = bytes / 1000;
  let unit = 0;
  // 999.5 kB would show as 1000 kB: that is 1 MB.
  while (value >= 999.5 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${Number(value.toPrecision(3))} ${BYTE_UNITS[unit]}`;
}

/** A duration in its two largest units, rounded down: 86_399 → "23 h 59 min". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3600);
  const mins = Math.floor((s % 3600) / 60);
  const two = (a: number, unitA: string, b: number, unitB: string) => (b > 0 ? `${a} ${unitA} ${b} ${unitB}` : `${a} ${unitA}`);
  if (days > 0) return two(days, 'd', hours, 'h');
  if (hours > 0) return two(hours, 'h', mins, 'min');
  if (mins > 0) return `${mins} min`;
  return `${s} s`;
}

// --- the pages ------------------------------------------------------------------------------

/** HTML text; the `html` tag escapes everything put into it that is not Html already. */
class Html {
  constructor(readonly text: string) {}
}

type Part = Html | string | number | undefined | false | readonly Part[];

function html(strings: TemplateStringsArray, ...parts: Part[]): Html {
  let text = strings[0];
  for (let i = 0; i < parts.length; i++) text += partText(parts[i]) + strings[i + 1];
  return new Html(text);
}

function partText(part: Part): string {
  if (part === undefined || part === false) return '';
  if (part instanceof Html) return part.text;
  if (Array.isArray(part)) return part.map(partText).join('');
  return escapeHtml(String(part));
}

const STYLE = `
:root{color-scheme:light dark;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.5}
body{margin:0;padding:1rem}
main{max-width:30rem;margin:0 auto}
h1{font-size:1.5rem;margin:.5rem 0 1rem}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
label,legend{display:block;font-weight:600}
input{box-sizing:border-box;width:100%;font:inherit;padding:.6rem;margin:.25rem 0 .75rem;border:1px solid;border-radius:.3rem}
fieldset{border:1px solid;border-radius:.3rem;margin:1rem 0;padding:.5rem 1rem 0}
legend{padding:0 .25rem}
button{font:inherit;font-weight:600;min-height:2.75rem;padding:.5rem 1.25rem;border:2px solid;border-radius:.3rem;cursor:pointer}
:focus-visible{outline:3px solid;outline-offset:2px}
.alert,.notice{border:2px solid;border-radius:.3rem;padding:.75rem;margin:0 0 1rem}
.alert{border-color:#c5221f}
.hint{font-size:.95rem;font-weight:400}
dl{display:grid;grid-template-columns:minmax(0,auto) minmax(0,1fr);gap:.35rem 1rem;margin:0}
dt{font-weight:600}
dd{margin:0}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.5rem}
.actions form{margin:0}
`;

function document(title: string, content: Html): Html {
  return html`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<style>${new Html(STYLE)}</style>
</head>
<body>
<main>
${content}
</main>
</body>
</html>
`;
}

interface LoginPageOptions {
  heading?: string;
  /** An error: said in a role="alert" element, so a screen reader reads it at once. */
  alert?: string | undefined;
  /** Good news (logged out): a role="status" element. */
  notice?: string | undefined;
  typed?: Typed | undefined;
}

function loginPage(options: LoginPageOptions): Html {
  const heading = options.heading ?? 'Log in';
  const typed = options.typed ?? {};
  return document(
    heading,
    html`<h1>${heading}</h1>
${options.alert !== undefined && html`<p class="alert" role="alert">${options.alert}</p>`}
${options.notice !== undefined && html`<p class="notice" role="status">${options.notice}</p>`}
<form method="post">
<input type="hidden" name="action" value="login">
<label for="code">Access code</label>
<input id="code" name="code" value="${typed.code ?? ''}" autocomplete="off" autocapitalize="characters" spellcheck="false" aria-describedby="code-hint">
<p class="hint" id="code-hint">It looks like K7QD-9F3M-TX2A-HB8R. Case and dashes do not matter.</p>
<fieldset>
<legend>Or log in with a user name and password</legend>
<label for="user">User name</label>
<input id="user" name="user" value="${typed.user ?? ''}" autocomplete="username" autocapitalize="none" spellcheck="false">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<label for="totp">One-time code <span class="hint">(only if your account has one)</span></label>
<input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code">
</fieldset>
<button type="submit">Log in</button>
</form>`,
  );
}

/** The JSON of `GET /rotor/quota` (quotaStatus in operations.ts), as far as the page reads it. */
interface QuotaStatus {
  metered: boolean;
  template?: string;
  used?: { bytesIn: number; bytesOut: number; usageSeconds: number };
  limits?: { bytesIn: number | null; bytesOut: number | null; bytesTotal: number | null; usageSeconds: number | null; until: string | null };
  remaining?: { bytesIn: number | null; bytesOut: number | null; bytesTotal: number | null; usageSeconds: number | null; seconds: number | null };
}

function parseStatus(body: Buffer | undefined): QuotaStatus | undefined {
  try {
    const value = JSON.parse(body?.toString('utf8') ?? '') as QuotaStatus;
    return typeof value === 'object' && value !== null && typeof value.metered === 'boolean' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The logged-in page: what is left (when `status` says), and the two buttons that carry the next token. */
function sessionPage(token: string, status: QuotaStatus | undefined, alert?: string): Html {
  const button = (action: string, label: string) =>
    html`<form method="post" autocomplete="off"><input type="hidden" name="action" value="${action}"><input type="hidden" name="token" value="${token}"><button type="submit">${label}</button></form>`;
  return document(
    'Your session',
    html`<h1>You are logged in</h1>
${alert !== undefined && html`<p class="alert" role="alert">${alert}</p>`}
${status !== undefined && quotaView(status)}
<div class="actions">
${button('status', 'Check what is left')}
${button('logout', 'Log out')}
</div>
<p class="hint">This page holds your session: use its buttons, not the browser's back button or reload.</p>`,
  );
}

function quotaView(status: QuotaStatus): Html {
  const { used, limits, remaining } = status;
  if (!status.metered || !used || !limits || !remaining) return html`<p>This session has no limits on data or time.</p>`;
  const rows: Html[] = [];
  const row = (label: string, value: Html) => rows.push(html`<dt>${label}</dt><dd>${value}</dd>
`);
  const bytes = (id: string, n: number) => html`<data id="${id}" value="${n}">${formatBytes(n)}</data>`;
  const seconds = (id: string, n: number) => html`<data id="${id}" value="${n}">${formatDuration(n)}</data>`;
  const ofBytes = (id: string, left: number | null, max: number | null) => (left === null || max === null ? false : html`${bytes(id, left)} of ${formatBytes(max)}`);
  const byteRows: Array<[string, Html | false]> = [
    ['Data left', ofBytes('left-total', remaining.bytesTotal, limits.bytesTotal)],
    ['Data you may send', ofBytes('left-in', remaining.bytesIn, limits.bytesIn)],
    ['Data you may receive', ofBytes('left-out', remaining.bytesOut, limits.bytesOut)],
  ];
  for (const [label, value] of byteRows) if (value !== false) row(label, value);
  if (byteRows.every(([, value]) => value === false)) row('Data left', html`no limit`);
  if (remaining.usageSeconds !== null) row('Time in use left', seconds('left-usage', remaining.usageSeconds));
  if (remaining.seconds !== null) row('Time left', html`${seconds('left-time', remaining.seconds)}${limits.until !== null && html` (until ${untilText(limits.until)})`}`);
  if (remaining.usageSeconds === null && remaining.seconds === null) row('Time left', html`no limit`);
  row('Used so far', html`${bytes('used-in', used.bytesIn)} sent, ${bytes('used-out', used.bytesOut)} received; ${seconds('used-time', used.usageSeconds)} in use`);
  return html`<p>Plan: <strong id="template">${status.template ?? ''}</strong></p>
<dl>
${rows}</dl>`;
}

/** An ISO time as "2026-11-24 13:05 UTC". */
function untilText(iso: string): string {
  const match = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)/.exec(iso);
  return match ? `${match[1]} ${match[2]} UTC` : iso;
}
