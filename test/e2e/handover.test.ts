/**
 * Hand-over end to end with the CLI (spec §11): two `rotor serve` processes, each with its peers
 * file and its own hand-over keys; a client logs in at a, is sent on to b by the example app's
 * `POST /hand-over/b`, logs in at b with the hand-over token (b checks it offline), rotates
 * there; a logout at a reaches b through a's revocation list within b's pull interval.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newHandOverKey, spkiBase64, writeHandOverKeys } from '../../src/handover/index.ts';
import { eventually } from './processes.ts';
import { freePort, RawConn, request, startCliServer } from './helpers.ts';
import { getHeader, type ResponseFrame } from '../../src/wire/index.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-handover-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const names = ['a', 'b'] as const;
const ports = { a: await freePort(), b: await freePort() };
const httpPorts = { a: await freePort(), b: await freePort() };
const keys = { a: newHandOverKey(Date.now(), 'ha'), b: newHandOverKey(Date.now(), 'hb') };
for (const name of names) {
  const other = name === 'a' ? 'b' : 'a';
  writeHandOverKeys(join(tmp, `${name}-keys.json`), [keys[name]]);
  const peers = {
    self: name,
    peers: [{ name: other, address: `tcp://127.0.0.1:${ports[other]}`, publicKeys: { [keys[other].id]: spkiBase64(keys[other].publicKey) }, revocations: `http://127.0.0.1:${httpPorts[other]}/rotor/revocations` }],
  };
  writeFileSync(join(tmp, `${name}-peers.json`), JSON.stringify(peers), { mode: 0o600 });
}
const servers = await Promise.all(
  names.map((name) =>
    startCliServer(
      ['serve', '--store', 'memory', '--user', 'alice', '--port', String(ports[name]), '--http-port', String(httpPorts[name]), '--peers', join(tmp, `${name}-peers.json`), '--hand-over-keys', join(tmp, `${name}-keys.json`), '--peers-pull-seconds', '1', '--log-level', 'warn'],
      ports[name],
      { env: { ROTOR_PASSWORD: 'wonderland' } },
    ),
  ),
);
t.teardown(() => Promise.all(servers.map((server) => server.stop('SIGKILL'))));

async function send(port: number, bytes: Buffer): Promise<ResponseFrame> {
  const connection = await RawConn.connect(port);
  try {
    return await connection.call(bytes, 5_000);
  } finally {
    connection.destroy();
  }
}

t.test('login at a, hand-over to b, rotating at b; a logout at a ends the session at b', async (t) => {
  const login = await send(ports.a, request('POST', '/rotor/login', { User: 'alice', Password: 'wonderland' }));
  const atA = getHeader(login, 'Token')!;
  t.ok(atA, 'logged in at a');
  const sent = await send(ports.a, request('POST', '/hand-over/b', { Token: atA }));
  t.equal(getHeader(sent, 'Out-of-band'), `tcp://127.0.0.1:${ports.b}`, "a's reply names b's address…");
  const handOver = getHeader(sent, 'Hand-over')!;
  t.match(handOver, /^h1\.ha\./, '…and carries a hand-over token signed with a\'s key');
  const atB = await send(ports.b, request('POST', '/rotor/login', { 'Hand-over': handOver, Home: 'a' }));
  let token = getHeader(atB, 'Token')!;
  t.ok(token, 'b takes it, offline, and opens a session of its own');
  for (let i = 0; i < 3; i++) {
    const reply = await send(ports.b, request('GET', '/hello', { Token: token }));
    t.equal(reply.status, 200);
    token = getHeader(reply, 'Token')!;
  }
  const again = await send(ports.b, request('POST', '/rotor/login', { 'Hand-over': handOver, Home: 'a' }));
  t.equal(getHeader(again, 'Error'), 'ROTOR_E_HANDOVER_REUSED', 'the hand-over token works once');
  const out = await send(ports.a, request('POST', '/rotor/logout', { Token: getHeader(sent, 'Token')! }));
  t.equal(out.status, 200, 'logout at a');
  const ended = await eventually(async () => getHeader(await send(ports.b, request('GET', '/hello', { Token: token })), 'Error') === 'ROTOR_E_SESSION_REVOKED', 15_000);
  t.ok(ended, "b ends the session it opened, from a's revocation list, within its pull interval");
});
