/**
 * curl, a client none of us wrote, against the HTTP carrier and the token API: if curl can do a
 * whole rotor session with plain `-H` options, so can any HTTP client.
 */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseHttpResponses, PASSWORD, run, startServer, USER, type RawHttpResponse } from './helpers.ts';

const curl = async (...args: string[]): Promise<{ raw: string; response: RawHttpResponse }> => {
  const { stdout } = await run('curl', ['-s', '-i', '--max-time', '10', ...args], { encoding: 'buffer' });
  const responses = parseHttpResponses(stdout);
  if (responses.length !== 1) throw new Error(`expected one response from curl ${args.join(' ')}, got ${responses.length}`);
  return { raw: stdout.toString('latin1'), response: responses[0] };
};

const server = await startServer({ tokenApi: { dump: true } });
t.teardown(() => server.close());
const url = `http://127.0.0.1:${server.httpPort}`;

t.test('a rotor session with curl', async (t) => {
  const login = await curl('-X', 'POST', '-H', `User: ${USER}`, '-H', `Password: ${PASSWORD}`, `${url}/rotor/login`);
  t.equal(login.response.status, 200, 'log in');
  const t1 = login.response.header('token')!;
  t.ok(t1, 'a token');

  const hello = await curl('-H', `Token: ${t1}`, `${url}/hello`);
  t.same([hello.response.status, hello.response.body.toString()], [200, `hello, ${USER}`], 'a message');
  const t2 = hello.response.header('token')!;

  const rotated = await curl('-X', 'PUT', '-H', `Token: ${t2}`, '-H', 'Content-Type: application/json', '--data', '{"via":"curl"}', `${url}/rotor/token`);
  t.same([rotated.response.status, JSON.parse(rotated.response.body.toString())], [200, { via: 'curl' }], 'rotate with metadata');
  const t3 = rotated.response.header('token')!;

  const lost = await curl('-H', `Token: ${t3}`, `${url}/hello`);
  const replayed = await curl('-H', `Token: ${t3}`, `${url}/hello`);
  t.equal(replayed.raw, lost.raw, 'after a "lost" response the same request gets the byte-identical response');
  const t4 = lost.response.header('token')!;

  const deferred = await curl('-X', 'POST', '-H', `Token: ${t4}`, '--data-binary', 'curl', `${url}/reverse`);
  t.equal(deferred.response.status, 202, 'deferred work');
  const t5 = deferred.response.header('token')!;
  const ack = await curl('-X', 'POST', '-H', `Token: ${t5}`, `${url}/rotor/ack`);
  t.same([ack.response.status, ack.response.header('token')], [200, undefined], 'ack: 200, no new token');

  const fallback = await curl('-X', 'POST', '-H', 'X-Rotor-Verb: GET', '-H', `Token: ${t5}`, `${url}/hello`);
  t.same([fallback.response.status, fallback.response.body.toString()], [200, `hello, ${USER}`], 'POST + X-Rotor-Verb: GET');
  const t6 = fallback.response.header('token')!;

  const page = await curl('-H', 'Accept: text/html', '-H', `Token: ${t6}`, `${url}/hello`);
  t.equal(page.response.header('content-type'), 'text/html; charset=utf-8', 'the HTML envelope');
  t.match(page.response.body.toString(), /<meta name="rotor-header" content="Token: [^"]+">/, 'with the token inside');
  const t7 = /content="Token: ([^"]+)"/.exec(page.response.body.toString())![1];

  const reused = await curl('-H', `Token: ${t1}`, `${url}/hello`);
  t.same([reused.response.status, reused.response.header('error')], [401, 'ROTOR_E_TOKEN_REUSED'], 'an old token: reuse');
  const revoked = await curl('-H', `Token: ${t7}`, `${url}/hello`);
  t.same([revoked.response.status, revoked.response.header('error')], [401, 'ROTOR_E_SESSION_REVOKED'], 'the session is revoked');
});

t.test('HTTPS with curl', async (t) => {
  const secure = await startServer({ tls: true });
  t.teardown(() => secure.close());
  const dir = await mkdtemp(path.join(tmpdir(), 'rotor-ca-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const ca = path.join(dir, 'ca.pem');
  await writeFile(ca, secure.tls!.cert);
  const login = await curl('--cacert', ca, '-X', 'POST', '-H', `User: ${USER}`, '-H', `Password: ${PASSWORD}`, `https://localhost:${secure.httpPort}/rotor/login`);
  t.equal(login.response.status, 200, 'log in over HTTPS, the certificate checked');
  const hello = await curl('--cacert', ca, '-H', `Token: ${login.response.header('token')}`, `https://localhost:${secure.httpPort}/hello`);
  t.equal(hello.response.body.toString(), `hello, ${USER}`, 'a message over HTTPS');
});

t.test("note 004's token API with curl", async (t) => {
  const json = ['-H', 'Content-Type: application/json'];
  const created = await curl('-X', 'POST', ...json, '--data', '{"meta":{"name":"My user","year":2022}}', `${url}/token`);
  t.equal(created.response.status, 200, 'POST /token');
  const t1 = created.response.body.toString();

  const put = ['-X', 'PUT', ...json, '--data', JSON.stringify({ token: t1, meta: { period: 11 } }), `${url}/token`];
  const exchanged = await curl(...put);
  const ok = JSON.parse(exchanged.response.body.toString()).Ok;
  t.same(ok.meta, { name: 'My user', year: 2022, period: 11 }, 'PUT /token merges the metadata');
  const again = await curl(...put);
  t.equal(again.raw, exchanged.raw, 'the same PUT again: the identical response');

  const next = await curl('-X', 'PUT', ...json, '--data', JSON.stringify({ token: ok.token }), `${url}/token`);
  const t3 = JSON.parse(next.response.body.toString()).Ok.token;
  const stale = await curl('-X', 'PUT', ...json, '--data', JSON.stringify({ token: t1 }), `${url}/token`);
  t.same(JSON.parse(stale.response.body.toString()), { Err: 'InvalidToken' }, 'an exchanged-away token: InvalidToken');

  const dump = await curl('-I', `${url}/dump`);
  t.equal(dump.response.status, 202, 'HEAD /dump');

  const form = await curl('-X', 'POST', '--data', '{"meta":{}}', `${url}/token`);
  t.equal(form.response.status, 415, "curl's default form type: 415");
  const malformed = await curl('-X', 'POST', ...json, '--data', '{"meta":', `${url}/token`);
  t.equal(malformed.response.status, 400, 'malformed JSON: 400');
  const shape = await curl('-X', 'POST', ...json, '--data', '{"metadata":{}}', `${url}/token`);
  t.equal(shape.response.status, 422, 'wrong shape: 422');

  const fresh = JSON.parse((await curl('-X', 'PUT', ...json, '--data', JSON.stringify({ token: t3 }), `${url}/token`)).response.body.toString());
  t.same(fresh, { Err: 'InvalidToken' }, 'the reuse above revoked the whole session');
  const other = (await curl('-X', 'POST', ...json, '--data', '{"meta":{}}', `${url}/token`)).response.body.toString();
  const deleted = await curl('-X', 'DELETE', ...json, '--data', JSON.stringify({ token: other }), `${url}/token`);
  t.equal(deleted.response.status, 202, 'DELETE /token: 202');
});
