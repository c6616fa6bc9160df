/**
 * The HTML envelope: what the server writes, the client reads back to the same frame; a filter
 * reshaping the page does not change what is read; a whole session works through it.
 */
import t from 'tap';
import fc from 'fast-check';
import { EnvelopeError, httpConnect, parseEnvelope, RotorClient, TokenReusedError } from '../../src/client/index.ts';
import { renderEnvelope, wantsHtml } from '../../src/transport/html.ts';
import type { ResponseFrame } from '../../src/wire/index.ts';
import { PASSWORD, startServer, USER } from './helpers.ts';

const frame = (headers: Array<[string, string]>, body: Buffer | undefined, status = 200, reason = 'OK'): ResponseFrame => ({ kind: 'response', status, reason, headers, body });

t.test('round trip', async (t) => {
  const cases: Array<[string, ResponseFrame]> = [
    ['no body', frame([['Token', 'k1.abc.def']], undefined)],
    ['an empty body', frame([], Buffer.alloc(0))],
    ['binary body', frame([['Content-Type', 'application/octet-stream']], Buffer.from([0, 1, 2, 0xfe, 0xff, 0x3c]))],
    ['markup in values', frame([['X-Evil', '"><script>alert(1)</script> & \' <!--']], Buffer.from('</pre><pre id="rotor-body">AAAA</pre>'))],
    ['UTF-8 and a colon in a value', frame([['X-Name', 'Jürgen: ✓']], undefined)],
    ['an error', frame([['Error', 'ROTOR_E_TOKEN_REUSED']], undefined, 401, 'Unauthorized')],
  ];
  for (const [name, original] of cases) t.same(parseEnvelope(renderEnvelope(original)), original, name);

  const name = fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/);
  const value = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((v) => !/[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$/.test(v));
  fc.assert(
    fc.property(
      fc.integer({ min: 100, max: 599 }),
      fc.stringMatching(/^[\x20-\x7e]{0,20}$/),
      fc.uniqueArray(fc.tuple(name, value), { selector: ([n]) => n.toLowerCase(), maxLength: 8 }),
      fc.option(fc.uint8Array({ maxLength: 200 }), { nil: undefined }),
      (status, reason, headers, body) => {
        const original = frame(headers, body === undefined ? undefined : Buffer.from(body), status, reason);
        t.strictSame(parseEnvelope(renderEnvelope(original)), original);
      },
    ),
    { numRuns: 200 },
  );
});

t.test('what a filter may do to the page', async (t) => {
  const original = frame([['Token', 'k1.a.b'], ['Task', 'x,y']], Buffer.from('hello, world'));
  const page = renderEnvelope(original)
    .replace('<head>', '<head><script>var injected = "<meta name=x>";</script>')
    .replace(/<meta name="rotor-status" content="200">/, "<META CONTENT='200' NAME='rotor-status'>")
    .replace(/>([A-Za-z0-9+/=]+)<\/pre>/, (_, b64: string) => `>\n  ${b64.match(/.{1,4}/g)!.join('\n  ')}\n</pre>`);
  t.same(parseEnvelope(page), original, 'other tags, attribute order and case, quoting, wrapped base64');
  t.throws(() => parseEnvelope('<html><body>a proxy error page</body></html>'), EnvelopeError, 'not an envelope');
  t.throws(() => parseEnvelope(renderEnvelope(original).replace('data-length="12"', 'data-length="13"')), EnvelopeError, 'a body cut short');
  t.throws(() => parseEnvelope(renderEnvelope(original).replace('Token: ', 'Token ')), EnvelopeError, 'a header without its colon');
});

t.test('wantsHtml', async (t) => {
  t.ok(wantsHtml('text/html'));
  t.ok(wantsHtml('text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'), 'a browser');
  t.notOk(wantsHtml('text/html;q=0'), 'refused explicitly');
  t.notOk(wantsHtml('*/*'), 'anything: plain HTTP');
  t.notOk(wantsHtml(undefined));
});

t.test('a whole session through the envelope, POST only', async (t) => {
  const server = await startServer();
  t.teardown(() => server.close());
  const connect = httpConnect(`http://127.0.0.1:${server.httpPort}`, { html: true, postOnly: true });
  const client = new RotorClient({ connect });
  t.teardown(() => client.close());
  await client.login(USER, PASSWORD);
  const first = client.token;
  t.equal((await client.request('GET', '/hello')).body.toString(), `hello, ${USER}`, 'a message');
  const deferred = await client.request('POST', '/reverse', { body: Buffer.from([1, 2, 3]) });
  t.equal(deferred.status, 202, 'deferred');
  await client.ack();
  const result = await client.waitForTask(deferred.tasks[0]);
  t.same([...result.body], [3, 2, 1], 'binary task result through base64');
  const thief = new RotorClient({ connect });
  t.teardown(() => thief.close());
  await thief.useToken(first);
  await t.rejects(thief.request('GET', '/hello'), TokenReusedError, 'reuse is reported through the envelope too');
});
