/**
 * A sealed session on the embedded store through kill -9 (spec §12; think like a crash): an
 * instance opens, works, loses a reply, and the server is killed without warning between any two
 * steps; a new `rotor serve` on the same data directory takes the same token and nonce — the
 * session key unwraps with the node's key file, the proofs it accepted are remembered (the
 * captured frame sent again is still a replay, not a reuse), and the lost reply comes back whole.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startOpen } from '../../src/seal/instance.ts';
import { sealProof } from '../../src/seal/proof.ts';
import { serializeFrame, getHeader, type ResponseFrame } from '../../src/wire/index.ts';
import { cli, freePort, RawConn, startCliServer, type CliServer } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-sealed-crash-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, 'data');

t.test('kill -9 between the steps of a sealed session loses nothing', async (t) => {
  const added = await cli('app', 'add', 'billing', '--json', '--data', data);
  t.equal(added.code, 0, added.stderr);
  const { id, key } = JSON.parse(added.stdout) as { id: string; key: string };
  const port = await freePort();
  let server: CliServer | undefined;
  let conn: RawConn | undefined;
  const boot = async () => {
    server = await startCliServer(['serve', '--data', data, '--port', String(port), '--log-level', 'warn'], port);
    conn = await RawConn.connect(port);
  };
  const crash = async () => {
    conn?.destroy();
    const run = await server!.stop('SIGKILL');
    t.equal(run.signal, 'SIGKILL', 'killed without warning');
  };
  t.teardown(async () => {
    conn?.destroy();
    await server?.stop('SIGKILL');
  });
  const call = (verb: string, path: string, headers: readonly (readonly [string, string])[], body?: string): Promise<ResponseFrame> =>
    conn!.call(serializeFrame({ kind: 'request', verb, path, headers, body: body === undefined ? undefined : Buffer.from(body) }));

  await boot();
  const nonce = getHeader(await call('GET', '/rotor/seal', []), 'Seal-Nonce')!;
  const pending = startOpen({ app: id, instance: 'host-1', key }, nonce);
  const opened = await call('POST', '/rotor/seal', pending.headers);
  const sessionKey = pending.sessionKey(getHeader(opened, 'Seal-Key')!)!;
  let token = getHeader(opened, 'Token')!;
  let sealNonce = getHeader(opened, 'Seal-Nonce')!;
  const proven = (verb: string, path: string, body?: string): Array<[string, string]> => [['Token', token], ['Seal-Proof', sealProof(sessionKey, sealNonce, verb, path, body === undefined ? undefined : Buffer.from(body))]];
  const take = (reply: ResponseFrame) => {
    token = getHeader(reply, 'Token') ?? token;
    sealNonce = getHeader(reply, 'Seal-Nonce') ?? sealNonce;
    return reply;
  };
  await crash();
  await boot();
  t.equal(getHeader(await call('POST', '/rotor/ack', proven('POST', '/rotor/ack')), 'Error'), undefined, 'confirmed after a crash that came right after the open');
  const read = take(await call('GET', '/hello', proven('GET', '/hello')));
  t.equal(read.status, 200, 'a proven read');
  // A request whose reply is lost in the crash.
  const workHeaders = proven('POST', '/reverse', 'stressed');
  const work = await call('POST', '/reverse', workHeaders, 'stressed');
  await crash();
  await boot();
  const again = await call('POST', '/reverse', workHeaders, 'stressed');
  t.same([again.status, getHeader(again, 'Token'), getHeader(again, 'Seal-Nonce'), getHeader(again, 'Task')], [work.status, getHeader(work, 'Token'), getHeader(work, 'Seal-Nonce'), getHeader(work, 'Task')], 'the lost reply, sent again after the crash: the same reply');
  take(again);
  t.equal(take(await call('GET', '/hello', proven('GET', '/hello'))).status, 200, 'the instance goes on');
  await crash();
  await boot();
  t.equal(getHeader(await call('POST', '/reverse', workHeaders, 'stressed'), 'Error'), 'ROTOR_E_SEAL_REPLAYED', 'after a crash the captured request is still known: a replay, not a clone');
  t.equal(take(await call('GET', '/hello', proven('GET', '/hello'))).status, 200, 'and the session lives');
});
