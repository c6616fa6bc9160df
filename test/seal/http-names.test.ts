/**
 * Note 003's header names on the HTTP carrier (spec §12 "On HTTP"): a sealed session opened,
 * confirmed and used with `X-Auth-*` alone, against a real HTTP listener; a request with both
 * names of one header is refused as a duplicate.
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { addApp } from '../../src/seal/apps.ts';
import { startOpen } from '../../src/seal/instance.ts';
import { sealProof } from '../../src/seal/proof.ts';
import { seededRandom } from '../../src/session/random.ts';
import { startServer } from '../carriers/helpers.ts';

const NOTE_003: Record<string, string> = { Instance: 'X-Auth-AppInstanceID', Seal: 'X-Auth-Seal', 'Seal-Nonce': 'X-Auth-Nonce' };

t.test('open, confirm and read with X-Auth-* names over HTTP', async (t) => {
  const server = await startServer({ app: exampleApp() });
  t.teardown(() => server.close());
  const base = `http://127.0.0.1:${server.httpPort}`;
  const app = await addApp(server.store, 'legacy', 'open', Date.now(), seededRandom(31));
  const nonce = (await fetch(`${base}/rotor/seal`)).headers.get('seal-nonce')!;
  t.ok(nonce, 'an open nonce over HTTP');
  const pending = startOpen({ app: app.id, instance: '10.0.0.7', key: app.key }, nonce);
  const headers = Object.fromEntries(pending.headers.map(([name, value]) => [NOTE_003[name] ?? name, value]));
  const opened = await fetch(`${base}/rotor/seal`, { method: 'POST', headers });
  t.equal(opened.status, 200, 'opened with X-Auth-AppInstanceID, X-Auth-Seal and X-Auth-Nonce');
  const key = pending.sessionKey(opened.headers.get('seal-key')!)!;
  const token = opened.headers.get('token')!;
  const sealNonce = opened.headers.get('seal-nonce')!;
  const confirm = await fetch(`${base}/rotor/ack`, { method: 'POST', headers: { 'X-Auth-SessionToken': token, 'X-Auth-CNonce': sealProof(key, sealNonce, 'POST', '/rotor/ack', undefined) } });
  t.equal(confirm.status, 200, 'confirmed with X-Auth-SessionToken and X-Auth-CNonce');
  const read = await fetch(`${base}/hello`, { headers: { 'X-Auth-SealedSessionToken': token, 'X-Auth-CNonce': sealProof(key, sealNonce, 'GET', '/hello', undefined) } });
  t.same([read.status, await read.text()], [200, 'hello, app:' + app.id + '/10.0.0.7'], 'a read with X-Auth-SealedSessionToken');
  const next = read.headers.get('token')!;
  const both = await fetch(`${base}/hello`, { headers: { Token: next, 'X-Auth-SessionToken': next, 'X-Auth-CNonce': sealProof(key, read.headers.get('seal-nonce')!, 'GET', '/hello', undefined) } });
  t.same([both.status, both.headers.get('error')], [400, 'ROTOR_E_DUPLICATE_HEADER'], 'Token and X-Auth-SessionToken together: a duplicate');
  const missing = await fetch(`${base}/hello`, { headers: { 'X-Auth-SessionToken': next } });
  t.same([missing.status, missing.headers.get('error')], [401, 'ROTOR_E_SEAL_PROOF_MISSING'], 'the token alone is refused over HTTP too');
});
