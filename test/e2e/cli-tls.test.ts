/**
 * The client commands over TLS against a real `rotor serve --tls-cert/--tls-key` (a throwaway
 * self-signed certificate for localhost and 127.0.0.1): trusted with --ca it works, without it
 * the certificate is refused with a message that says what to do, --insecure skips the check,
 * --servername is the name checked. And the library under it: a refused certificate is a
 * TlsCertificateError, tried once, not retried like a lost connection.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RotorClient, tcpConnect, TlsCertificateError, TransportError, type Connect } from '../../src/client/index.ts';
import { throwawayCertificate } from '../carriers/helpers.ts';
import { cli, cliWith, freePort, startCliServer } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-cli-tls-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const { cert, key } = await throwawayCertificate();
const certFile = join(tmp, 'cert.pem');
const keyFile = join(tmp, 'key.pem');
writeFileSync(certFile, cert);
writeFileSync(keyFile, key, { mode: 0o600 });

const data = join(tmp, 'data');
const added = await cli('user', 'add', 'alice', '--password', 'wonderland', '--data', data);
if (added.code !== 0) throw new Error(`rotor user add failed: ${JSON.stringify(added)}`);
const port = await freePort();
const server = await startCliServer(['serve', '--data', data, '--port', String(port), '--tls-cert', certFile, '--tls-key', keyFile, '--log-level', 'warn'], port);
t.teardown(() => server.stop('SIGKILL'));

const target = ['--port', String(port), '--user', 'alice', '--password', 'wonderland'];
const hello = ['GET', '/hello'];
const tokenFile = join(tmp, 'token');

// Independent commands, all started now (helpers.ts runs a few at a time).
const trusted = cli('call', '--tls', '--ca', certFile, ...target, ...hello);
const caAlone = cli('call', '--ca', certFile, ...target, ...hello);
const untrusted = cli('call', '--tls', ...target, ...hello);
const insecure = cli('call', '--insecure', ...target, ...hello);
const byName = cli('call', '--ca', certFile, '--servername', 'localhost', ...target, ...hello);
const wrongName = cli('call', '--ca', certFile, '--servername', 'elsewhere.example', ...target, ...hello);
const plain = cli('call', ...target, '--timeout', '2000', ...hello);
const bothWays = cli('call', '--insecure', '--ca', certFile, ...target, ...hello);
const session = (async () => {
  const tls = ['--ca', certFile, '--port', String(port), '--token-file', tokenFile];
  const login = await cliWith({ env: { ROTOR_PASSWORD: 'wonderland' } }, 'login', ...tls, '--user', 'alice');
  const token = readFileSync(tokenFile, 'utf8');
  const call = await cli('call', ...tls, ...hello);
  const logout = await cli('logout', ...tls);
  const after = await cli('call', ...tls, ...hello);
  return { login, token, call, logout, after };
})();
for (const chain of [trusted, caAlone, untrusted, insecure, byName, wrongName, plain, bothWays, session]) chain.catch(() => {});

t.test('rotor call --tls --ca trusts the server certificate and gets the reply', async (t) => {
  for (const [how, run] of [['--tls --ca', await trusted], ['--ca alone', await caAlone], ['--servername localhost', await byName]] as const) {
    t.strictSame([run.code, run.stdout, run.stderr], [0, 'hello, alice', ''], how);
  }
});

t.test('without --ca the self-signed certificate is refused, and the message says how to trust it', async (t) => {
  const run = await untrusted;
  t.equal(run.code, 1);
  t.equal(run.stdout, '');
  t.match(run.stderr, /the server's TLS certificate was refused: self[- ]signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
  t.match(run.stderr, /--ca FILE/);
});

t.test('--servername names the certificate checked: another name is refused', async (t) => {
  const run = await wrongName;
  t.equal(run.code, 1);
  t.match(run.stderr, /ERR_TLS_CERT_ALTNAME_INVALID/);
  t.match(run.stderr, /--servername NAME/);
});

t.test('--insecure connects without checking, and says so on stderr', async (t) => {
  const run = await insecure;
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, 'hello, alice');
  t.match(run.stderr, /warning: --insecure: the server's certificate is not checked/);
  const both = await bothWays;
  t.equal(both.code, 1, '--insecure with --ca is a contradiction, refused');
  t.match(both.stderr, /mutually exclusive/);
});

t.test('plain TCP against the TLS server fails rather than hanging', async (t) => {
  const run = await plain;
  t.equal(run.code, 1);
  t.equal(run.stdout, '');
  t.match(run.stderr, /connection closed before an answer .*add --tls/);
});

t.test('login, call and logout keep a TLS session in --token-file', async (t) => {
  const { login, token, call, logout, after } = await session;
  t.strictSame([login.code, login.stderr], [0, ''], 'login, the password from ROTOR_PASSWORD');
  t.match(token, /^k[a-z0-9]{1,15}\./, 'the token file holds a token');
  t.strictSame([call.code, call.stdout, call.stderr], [0, 'hello, alice', ''], 'call with the token from the file');
  t.strictSame([logout.code, logout.stderr], [0, ''], 'logout');
  t.equal(after.code, 1, 'the session is over');
});

t.test('library: tcpConnect({ tls }) speaks TLS; a refused certificate is not retried', async (t) => {
  const client = new RotorClient({ connect: tcpConnect({ port, tls: { ca: cert } }) });
  t.teardown(() => client.close());
  await client.login('alice', 'wonderland');
  t.equal((await client.request('GET', '/hello')).body.toString(), 'hello, alice', 'with ca: a session over TLS');
  await client.logout();

  let attempts = 0;
  const untrustedConnect = tcpConnect({ port, tls: {} });
  const counting: Connect = () => {
    attempts++;
    return untrustedConnect();
  };
  const refused = new RotorClient({ connect: counting, retries: 3, retryDelayMs: 1 });
  const err = await refused.login('alice', 'wonderland').catch((e: unknown) => e);
  t.ok(err instanceof TlsCertificateError, `a TlsCertificateError: ${String(err)}`);
  t.ok(err instanceof TransportError, 'which is a TransportError (nothing reached the server)');
  t.equal((err as TlsCertificateError).code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  t.equal(attempts, 1, 'connected once: retrying cannot make the certificate trusted');
});
