/**
 * Access codes end to end (spec §10), as an operator and clients meet them: `rotor template add`
 * and `rotor lot issue` on the embedded store print the codes as CSV; `rotor serve` with the HTTP
 * carrier; one code spent with curl over HTTP to the documented refusal, then refused at login;
 * the other spent over raw TCP by the spec-only python client (test/e2e/raw_client.py --code),
 * which counts every frame's bytes itself and reads GET /rotor/quota; then `rotor lot show`.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli, freePort, startCli, startCliServer, type Run } from './helpers.ts';

const CAP = 3000;
const SCRIPT = fileURLToPath(new URL('./raw_client.py', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'rotor-quota-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, 'data');

/** A command that must succeed: what it wrote, or the test fails with what it said. */
async function ok(run: Promise<Run>, what: string): Promise<Run> {
  const done = await run;
  if (done.code !== 0) throw new Error(`${what} failed (${done.code ?? done.signal}): ${done.stderr}${done.stdout}`);
  return done;
}

const template = await ok(cli('template', 'add', 'day-pass', '--max-total', String(CAP), '--data', data), 'rotor template add');
const issued = await ok(cli('lot', 'issue', '--template', 'day-pass', '--count', '2', '--comment', 'e2e cards', '--id', 'front-desk', '--data', data), 'rotor lot issue');
const [port, httpPort] = [await freePort(), await freePort()];
const server = await startCliServer(['serve', '--data', data, '--port', String(port), '--http-port', String(httpPort), '--log-level', 'warn'], port);
t.teardown(() => server.stop('SIGKILL'));

const csv = issued.stdout.trim().split('\n');
const codes = csv.slice(1).map((line) => line.split(',')[1]);
/** What the python client counted it spent, in frame bytes. */
let pythonSpent = 0;

t.test('rotor template add and rotor lot issue: the codes, once, as CSV', async (t) => {
  t.match(template.stdout, /template saved: day-pass: total 3000 B, reusable/);
  t.equal(csv[0], 'lot,code,template,comment', 'the CSV header');
  t.same(
    csv.slice(1).map((line) => line.replace(/,[^,]*,/, ',CODE,')),
    ['front-desk,CODE,day-pass,e2e cards', 'front-desk,CODE,day-pass,e2e cards'],
    'one line per code: lot, code, template, comment',
  );
  for (const code of codes) t.match(code, /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/, `${code}: 16 characters of Crockford's base32, grouped`);
  t.not(codes[0], codes[1]);
});

interface HttpReply {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** One HTTP request with curl; the response as curl shows it (-i). */
async function curl(verb: string, path: string, headers: Record<string, string>): Promise<HttpReply> {
  const args = ['--silent', '--show-error', '--include', '--max-time', '10', '--request', verb, ...Object.entries(headers).flatMap(([name, value]) => ['--header', `${name}: ${value}`])];
  const { stdout } = await ok(startCli([...args, `http://127.0.0.1:${httpPort}${path}`], {}, ['curl']).done, `curl ${verb} ${path}`);
  const end = stdout.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = stdout.slice(0, end).split('\r\n');
  const headerMap = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine.split(' ')[1]), headers: headerMap, body: stdout.slice(end + 4) };
}

t.test('over HTTP with curl: a code logs in, spends its bytes to the documented refusal, and is then spent', async (t) => {
  const login = await curl('POST', '/rotor/login', { Code: codes[0] });
  t.equal(login.status, 200, `the code logs in (${login.headers.get('error') ?? ''})`);
  t.equal(login.headers.get('quota-template'), 'day-pass', 'with its template named');
  let token = login.headers.get('token');
  t.ok(token, 'and the first token');
  let reply = login;
  let exchanges = 0;
  const tokens = new Set([token]);
  while (exchanges < 100) {
    reply = await curl('GET', '/hello', { Token: token! });
    const next = reply.headers.get('token');
    if (!next) break;
    if (reply.status !== 200 || tokens.has(next)) t.fail(`exchange ${exchanges + 1}: ${reply.status}, ${tokens.has(next) ? 'a token seen before' : 'a new token'}`);
    tokens.add(next);
    token = next;
    exchanges++;
  }
  t.ok(exchanges > 2 && exchanges < 100, `${exchanges} exchanges, then a reply without a token`);
  t.equal(reply.status, 403, 'the refusal is 403');
  t.equal(reply.headers.get('error'), 'ROTOR_E_QUOTA_BYTES_TOTAL');
  t.equal(reply.headers.get('quota-limit'), 'bytes-total');
  const after = await curl('GET', '/hello', { Token: token! });
  t.same([after.status, after.headers.get('error')], [401, 'ROTOR_E_SESSION_REVOKED'], 'the session has ended: its newest token is refused');
  const again = await curl('POST', '/rotor/login', { Code: codes[0] });
  t.same([again.status, again.headers.get('error'), again.headers.get('quota-limit')], [403, 'ROTOR_E_CODE_SPENT', 'bytes-total'], 'a login with the same code: spent, and which cap');
  t.notOk(again.headers.has('token'));
});

t.test('over raw TCP, the spec-only python client spends the other code and reports the refusal', async (t) => {
  const run = await startCli(['--port', String(port), '--code', codes[1].toLowerCase()], {}, ['python3', SCRIPT]).done;
  let facts: Record<string, unknown>;
  try {
    facts = JSON.parse(run.stdout.trim().split('\n').pop() ?? '');
  } catch {
    facts = { unparsed: run.stdout };
  }
  t.equal(run.stderr, '', 'nothing on stderr');
  t.equal(run.code, 0, `exit code (${JSON.stringify(facts)})`);
  t.match(facts, {
    ok: true,
    step: 'done',
    template: 'day-pass',
    quota: { template: 'day-pass', bytes_total: CAP },
    refusal: 'ROTOR_E_QUOTA_BYTES_TOTAL',
    quota_limit: 'bytes-total',
    after: 'ROTOR_E_SESSION_REVOKED',
    login_again: '403 ROTOR_E_CODE_SPENT bytes-total',
  });
  const spent = Number(facts.spent);
  pythonSpent = spent;
  t.ok(spent - Number(facts.last_reply_bytes) <= CAP, `below the cap before the last reply (the client counted ${spent} bytes, the last reply ${facts.last_reply_bytes})`);
  t.ok(spent + Number(facts.refused_request_bytes) > CAP, `the refused request would have passed the cap (${spent} + ${facts.refused_request_bytes} > ${CAP})`);
});

t.test('rotor lot show: both codes used up by their bytes', async (t) => {
  const shown = JSON.parse((await ok(cli('lot', 'show', 'front-desk', '--codes', '--data', data), 'rotor lot show')).stdout);
  t.match(shown, { lot: { id: 'front-desk', template: 'day-pass', comment: 'e2e cards', count: 2 } });
  t.same(
    shown.codes.map((code: { status: string; lastEnd: { reason: string } | null; session: string | null }) => [code.status, code.lastEnd?.reason, code.session]),
    [
      ['exhausted', 'bytes-total', null],
      ['exhausted', 'bytes-total', null],
    ],
    'each exhausted, its connection ended by bytes-total and folded into it',
  );
  const total = (i: number) => shown.codes[i].used.bytesIn + shown.codes[i].used.bytesOut;
  // curl's frames carry its own headers (User-Agent, Accept): a few hundred bytes each way.
  t.ok(total(0) > CAP - 500 && total(0) < CAP + 500, `curl's code holds about the cap (${total(0)} B)`);
  t.equal(total(1), pythonSpent, "the python client's code holds exactly the frame bytes it counted");
});
