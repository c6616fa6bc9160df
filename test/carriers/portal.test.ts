/**
 * The login page (spec §10 "The login page") in a real browser: headless Chromium (Debian's
 * `chromium`, installed by scripts/test-deps.sh) against a real rotor HTTP listener. A person
 * types an access code into the labelled field, sees what the code has left, checks again (one
 * token exchange: the counters went up), and logs out; a wrong code gets a sentence in the
 * role="alert" element and 401. The page loads nothing but itself and works with JavaScript
 * off; another site's form cannot post to it. Chromium that cannot start fails the test.
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import t, { type Test } from 'tap';
import puppeteer, { type HTTPResponse, type Page } from 'puppeteer-core';
import { codeId, normalizeCode } from '../../src/quotas/codes.ts';
import { formatBytes, formatDuration, portal, PORTAL_MAX_BODY, refusalText, type PortalRequest } from '../../src/quotas/page.ts';
import { issueLot, templateRecord } from '../../src/quotas/templates.ts';
import type { CodeRecord } from '../../src/quotas/types.ts';
import { seededRandom } from '../../src/session/random.ts';
import { Reply, type Header, type RequestFrame } from '../../src/wire/index.ts';
import { startServer } from './helpers.ts';

t.setTimeout(120_000);

const GB = 1_000_000_000;
const DAY_MS = 86_400_000;

/** Chromium from PATH, as `command -v chromium` finds it; missing is a failure, never a skip. */
function chromiumPath(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('chromium is not on PATH: install the Debian package chromium (npm test does, as root: scripts/test-deps.sh)');
  }
}

/**
 * A rotor with a template and a lot of two codes, and Chromium with one page that records every
 * request it makes and lets through only those to rotor; all closed when `t` ends.
 */
async function portalSession(t: Test) {
  const server = await startServer();
  t.teardown(() => server.close());
  const now = Date.now();
  const template = templateRecord('day-pass', { maxBytesTotal: 1.5 * GB, usageMs: DAY_MS }, now);
  await server.store.commitRecord('template', template.name, template, 0);
  const { codes } = await issueLot(server.store, seededRandom(7), { id: 'lobby', template, count: 2, comment: 'test', issuer: 'op', owner: '', now });
  const origin = `http://127.0.0.1:${server.httpPort}`;
  const browser = await puppeteer.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', '--headless=new'], timeout: 30_000 });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const requests: string[] = [];
  await page.setRequestInterception(true);
  page.on('request', (request) => {
    requests.push(request.url());
    if (new URL(request.url()).origin === origin) void request.continue();
    else void request.abort();
  });
  return { server, codes, origin, browser, page, requests };
}

/** Press a button (found by its accessible name) and wait for the page it leads to. */
async function press(page: Page, name: string): Promise<HTTPResponse> {
  const [response] = await Promise.all([page.waitForNavigation({ timeout: 15_000 }), page.click(`::-p-aria([name="${name}"][role="button"])`)]);
  if (!response) throw new Error(`pressing ${name} led nowhere`);
  return response;
}

const text = (page: Page, selector: string) => page.$eval(selector, (element) => (element as HTMLElement).innerText.replace(/\s+/g, ' ').trim());
const dataValue = (page: Page, id: string) => page.$eval(`data#${id}`, (element) => Number(element.getAttribute('value')));
const hiddenToken = (page: Page, action: string) => page.$eval(`form:has(input[name=action][value=${action}]) input[name=token]`, (element) => (element as HTMLInputElement).value);

t.test('a code logs in, shows what is left, checks again, logs out — JavaScript off, nothing loaded from elsewhere', { timeout: 90_000 }, async (t) => {
  const { server, codes, origin, page, requests } = await portalSession(t);
  await page.setJavaScriptEnabled(false);
  await page.setViewport({ width: 360, height: 640 });

  const form = await page.goto(`${origin}/rotor/portal`);
  t.equal(form?.status(), 200);
  const headers = form!.headers();
  t.match(headers['content-type'], /^text\/html; charset=utf-8$/);
  t.equal(headers['cache-control'], 'no-store');
  t.equal(headers['content-security-policy'], "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  t.equal(headers['x-content-type-options'], 'nosniff');
  t.equal(headers['referrer-policy'], 'no-referrer');
  t.equal(await page.$eval('html', (element) => element.lang), 'en');
  t.ok(await page.$('main form'), 'the form is in <main>');
  t.ok(await page.$('::-p-aria([name="User name"][role="textbox"])'), 'the user name field is labelled');
  t.ok(await page.$('fieldset legend'), 'user and password are a fieldset of their own');
  t.ok(await page.$eval('html', (element) => element.scrollWidth <= 360), 'no sideways scrolling at a phone\'s width');

  await page.type('::-p-aria([name="Access code"][role="textbox"])', codes[0].toLowerCase());
  const loggedIn = await press(page, 'Log in');
  t.equal(loggedIn.status(), 200);
  t.equal(await text(page, 'h1'), 'You are logged in');
  t.equal(await text(page, '#template'), 'day-pass', 'the template is shown');
  const body = await text(page, 'main');
  t.match(body, /Data left 1\.5 GB of 1\.5 GB/, 'bytes left in human units');
  t.match(body, /Time in use left 23 h 59 min/, 'time left in hours and minutes');
  t.equal(await page.$('[role=alert]'), null, 'no alert');
  const usedAtLogin = await dataValue(page, 'used-in');
  t.ok(usedAtLogin > 0, 'the page\'s own exchanges are counted');
  const leftAtLogin = await dataValue(page, 'left-total');
  const firstToken = await hiddenToken(page, 'status');
  t.equal(await hiddenToken(page, 'logout'), firstToken, 'both forms carry the newest token');
  t.notMatch(page.url(), /k1\./, 'the token is never in the address');

  const checked = await press(page, 'Check what is left');
  t.equal(checked.status(), 200);
  t.equal(await text(page, '#template'), 'day-pass');
  t.ok((await dataValue(page, 'used-in')) > usedAtLogin, 'the bytes sent went up');
  t.ok((await dataValue(page, 'used-out')) > 0, 'the replies are counted too');
  t.ok((await dataValue(page, 'left-total')) < leftAtLogin, 'less is left');
  t.not(await hiddenToken(page, 'status'), firstToken, 'the token rotated');

  const out = await press(page, 'Log out');
  t.equal(out.status(), 200);
  t.equal(await text(page, 'h1'), 'You are logged out');
  t.match(await text(page, '[role=status]'), /session has ended/);
  t.ok(await page.$('::-p-aria([name="Access code"][role="textbox"])'), 'and the form to log in again');
  const code = (await server.store.loadRecord<CodeRecord>('code', codeId(normalizeCode(codes[0])!)))!.value;
  t.same([code.session, code.lastEnd?.reason], [null, 'logout'], 'the code\'s connection ended');

  await page.type('::-p-aria([name="Access code"][role="textbox"])', 'AAAA-BBBB-CCCC-DDDD');
  const wrong = await press(page, 'Log in');
  t.equal(wrong.status(), 401, 'the rotor reply\'s status');
  t.equal(await text(page, '[role=alert]'), 'This code is not valid. Check it and try again.');
  t.equal(await page.$eval('#code', (element) => (element as HTMLInputElement).value), 'AAAA-BBBB-CCCC-DDDD', 'what was typed is there to correct');

  t.ok(requests.length >= 5, 'the requests were seen');
  t.same(
    requests.filter((url) => new URL(url).origin !== origin),
    [],
    'every request went to rotor',
  );
});

t.test('with JavaScript: markup typed in is shown as text; another site\'s form cannot use a live token', { timeout: 90_000 }, async (t) => {
  const { codes, origin, browser, page, requests } = await portalSession(t);
  const scripts: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'log') scripts.push(message.text());
  });

  await page.goto(`${origin}/rotor/portal`);
  const evil = '"><script>console.log("ran")</script>';
  await page.type('#user', evil);
  await page.type('#password', 'not the password');
  const refused = await press(page, 'Log in');
  t.equal(refused.status(), 401);
  t.equal(await text(page, '[role=alert]'), 'The user name or password is not right. Try again.');
  t.equal(await page.$eval('#user', (element) => (element as HTMLInputElement).value), evil, 'the name comes back as typed');
  t.equal(await page.$('script'), null, 'and not as markup');
  t.equal(await page.$eval('#password', (element) => (element as HTMLInputElement).value), '', 'the password never comes back');
  t.same(scripts, [], 'nothing ran');

  await page.$eval('#user', (element) => ((element as HTMLInputElement).value = ''));
  await page.type('#code', codes[1]);
  t.equal((await press(page, 'Log in')).status(), 200);
  const token = await hiddenToken(page, 'logout');
  t.same(requests.filter((url) => new URL(url).origin !== origin), [], 'every request went to rotor');

  // Another origin (another port: the same site, not the same origin) with a form that would log the session out.
  const other = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!DOCTYPE html><form method="post" action="${origin}/rotor/portal"><input type="hidden" name="action" value="logout"><input type="hidden" name="token" value="${token}"><button>Go</button></form>`);
  });
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    other.closeAllConnections(); // Chromium keeps its connection open for a minute
    return new Promise((resolve) => other.close(resolve));
  });
  const attacker = await browser.newPage();
  await attacker.goto(`http://127.0.0.1:${(other.address() as { port: number }).port}/`);
  const [response] = await Promise.all([attacker.waitForNavigation(), attacker.click('button')]);
  t.equal(response?.status(), 403, 'a form post from another origin is refused');
  t.match(await text(attacker, '[role=alert]'), /another web site/);
  await page.bringToFront();
  t.equal((await press(page, 'Check what is left')).status(), 200, 'and the session goes on with the same token');
  t.equal(await text(page, '#template'), 'day-pass');
});

// --- the page without a browser: what each answer is ---------------------------------------

const FORM = 'application/x-www-form-urlencoded';

function post(fields: Record<string, string>, headers: Header[] = [['Content-Type', FORM]]): PortalRequest {
  return { method: 'POST', headers, body: Buffer.from(new URLSearchParams(fields).toString()) };
}

/** A dispatcher that answers every frame with `reply` and keeps what it was sent. */
function fake(...replies: Reply[]): { dispatch: (frame: RequestFrame) => Promise<Reply>; sent: RequestFrame[] } {
  const sent: RequestFrame[] = [];
  return { sent, dispatch: async (frame) => (sent.push(frame), replies.shift() ?? Reply.of(500, [['Error', 'ROTOR_E_INTERNAL']])) };
}

const refusal = (status: number, code: string, ...extra: Header[]) => Reply.of(status, [['Error', code], ...extra]);
const alertOf = (body: Buffer) => /role="alert">([^<]*)</.exec(body.toString())?.[1];

t.test('the frames a press sends, and the answers without a browser', async (t) => {
  const login = fake(Reply.of(200, [['Token', 'k1.a.b'], ['Quota-Template', 'p']]), Reply.of(200, [['Token', 'k1.c.d'], ['Content-Type', 'application/json']], Buffer.from('{"metered":false}')));
  const shown = await portal(post({ action: 'login', user: 'alice', password: ' pw ', code: 'K7QD-9F3M-TX2A-HB8R', totp: '123456' }), login.dispatch);
  t.equal(shown.status, 200);
  t.same(
    login.sent.map((frame) => [frame.verb, frame.path, frame.headers]),
    [
      ['POST', '/rotor/login', [['User', 'alice'], ['Password', ' pw '], ['Code', 'K7QD-9F3M-TX2A-HB8R'], ['TOTP', '123456'], ['Client-Info', 'rotor-portal']]],
      ['GET', '/rotor/quota', [['Token', 'k1.a.b'], ['Client-Info', 'rotor-portal']]],
    ],
    'a login, then the quota exchange with its token',
  );
  t.match(shown.body.toString(), /name="token" value="k1\.c\.d"/, 'the next token is in the page');
  t.match(shown.body.toString(), /no limits/, 'an unmetered session says so');

  const gone = fake(refusal(401, 'ROTOR_E_TOKEN_REUSED'));
  const reused = await portal(post({ action: 'status', token: 'k1.a.b' }), gone.dispatch);
  t.same([reused.status, gone.sent[0].path], [401, '/rotor/quota']);
  t.match(alertOf(reused.body), /used twice/);

  const down = await portal(post({ action: 'logout', token: 'k1.a.b' }), fake(refusal(503, 'ROTOR_E_UNAVAILABLE')).dispatch);
  t.equal(down.status, 503, 'a passing refusal…');
  t.match(down.body.toString(), /name="token" value="k1\.a\.b"/, '…keeps the token sent, to try again with');

  const busy = await portal(post({ code: 'K7QD-9F3M-TX2A-HB8R' }), fake(refusal(409, 'ROTOR_E_CODE_IN_USE', ['Wait-for', '130'])).dispatch);
  t.same([busy.status, alertOf(busy.body)], [409, 'This code is in use on another device. Log out there, or try again in about 3 minutes.']);

  const empty = fake();
  t.equal((await portal(post({ action: 'login' }), empty.dispatch)).status, 400, 'nothing typed: nothing sent');
  t.equal((await portal(post({ user: 'alice' }), empty.dispatch)).status, 400, 'no password');
  t.equal((await portal(post({ code: 'a\u0001b' }), empty.dispatch)).status, 400, 'a control character');
  t.equal((await portal(post({ code: 'x'.repeat(PORTAL_MAX_BODY) }), empty.dispatch)).status, 413);
  t.equal((await portal(post({ code: 'x' }, [['Content-Type', 'text/plain']]), empty.dispatch)).status, 415);
  t.equal((await portal(post({ action: 'nonsense' }), empty.dispatch)).status, 400);
  const put = await portal({ method: 'PUT', headers: [], body: undefined }, empty.dispatch);
  t.same([put.status, put.headers.find(([name]) => name === 'Allow')?.[1]], [405, 'GET, POST']);
  t.same(empty.sent, [], 'none of these reached the dispatcher');

  const from = (headers: Header[]) => portal(post({ code: 'x' }, [['Content-Type', FORM], ...headers]), fake(refusal(401, 'ROTOR_E_CODE_INVALID')).dispatch);
  t.equal((await from([['Host', 'portal.example:8080'], ['Origin', 'http://portal.example:8080']])).status, 401, 'same origin: sent on');
  t.equal((await from([['Host', 'portal.example'], ['Origin', 'https://portal.example']])).status, 401, 'behind a TLS proxy: the host is what counts');
  t.equal((await from([])).status, 401, 'no Origin, no Sec-Fetch-Site: not a browser\'s cross-site post');
  t.equal((await from([['Host', 'portal.example'], ['Origin', 'http://evil.example']])).status, 403);
  t.equal((await from([['Host', 'portal.example'], ['Origin', 'null']])).status, 403, 'an opaque origin');
  t.equal((await from([['Origin', 'null'], ['Sec-Fetch-Site', 'same-origin']])).status, 401, 'the page\'s own form (no-referrer sends Origin: null)');
  t.equal((await from([['Origin', 'null'], ['Sec-Fetch-Site', 'cross-site']])).status, 403);
  t.equal((await from([['Origin', 'http://portal.example']])).status, 403, 'an Origin and no Host to match');
  t.equal((await from([['Sec-Fetch-Site', 'cross-site']])).status, 403);
  t.equal((await from([['Sec-Fetch-Site', 'same-site']])).status, 403, 'another site of the same domain too');

  for (const answer of [shown, busy, put]) {
    t.same(answer.headers.slice(0, 5).map(([name]) => name), ['Content-Type', 'Cache-Control', 'Content-Security-Policy', 'X-Content-Type-Options', 'Referrer-Policy']);
  }
});

t.test('words and numbers', async (t) => {
  const say = (code: string, ...extra: Header[]) => refusalText(refusal(400, code, ...extra).frame);
  t.equal(say('ROTOR_E_CODE_SPENT', ['Quota-Limit', 'bytes-total']), 'This code is used up. You need a new code.');
  t.equal(say('ROTOR_E_RATE_LIMITED', ['Wait-for', '30']), 'Too many tries. Wait 30 seconds and try again.');
  t.equal(say('ROTOR_E_RATE_LIMITED', ['Wait-for', '900']), 'Too many tries. Wait about 15 minutes and try again.');
  t.equal(say('ROTOR_E_CODE_IN_USE', ['Wait-for', '60']), 'This code is in use on another device. Log out there, or try again in about 1 minute.');
  for (const code of ['ROTOR_E_CODE_EXPIRED', 'ROTOR_E_CODE_REVOKED', 'ROTOR_E_NODE_NOT_ALLOWED', 'ROTOR_E_QUOTA_BYTES_TOTAL', 'ROTOR_E_QUOTA_NEEDS_CODE', 'ROTOR_E_AUTH_FAILED']) {
    t.notMatch(say(code), /ROTOR_E_|went wrong/, `${code} has its own sentence`);
  }
  t.equal(say('ROTOR_E_UNAVAILABLE'), 'Something went wrong (ROTOR_E_UNAVAILABLE). Try again later.', 'the fallback names the code');
  t.same([formatBytes(0), formatBytes(1), formatBytes(999), formatBytes(1500), formatBytes(123_456), formatBytes(999_600), formatBytes(1.5 * GB)], ['0 bytes', '1 byte', '999 bytes', '1.5 kB', '123 kB', '1 MB', '1.5 GB']);
  t.same([formatDuration(0), formatDuration(59), formatDuration(60), formatDuration(3600), formatDuration(86_399), formatDuration(2 * 86_400 + 7200)], ['0 s', '59 s', '1 min', '1 h', '23 h 59 min', '2 d 2 h']);
});
