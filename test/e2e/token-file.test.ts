/**
 * The CLI's token file holds a live token: it is written 0600 through a fresh, exclusively
 * created temporary file, whatever another user left next to it (a world-writable
 * `.token.tmp`, or a symlink planted there).
 */
import t from 'tap';
import { lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliWith, startServer } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'rotor-token-file-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('rotor login writes the token file 0600 and touches nothing planted beside it', async (t) => {
  const server = await startServer();
  t.teardown(() => server.close());
  const tokenFile = join(dir, '.token');
  // What a hostile neighbour may leave: the old fixed temp name, world-writable, and a symlink.
  writeFileSync(`${tokenFile}.tmp`, 'planted');
  chmodSync(`${tokenFile}.tmp`, 0o666);
  const target = join(dir, 'elsewhere');
  writeFileSync(target, 'untouched');
  symlinkSync(target, `${tokenFile}.link.tmp`);
  const run = await cliWith({ env: { ROTOR_PASSWORD: 'pw' } }, 'login', '--port', String(server.port), '--user', 'alice', '--token-file', tokenFile);
  t.equal(run.code, 0, run.stderr);
  t.equal((statSync(tokenFile).mode & 0o777).toString(8), '600', 'the token file is its owner’s alone');
  t.match(readFileSync(tokenFile, 'utf8'), /^k[a-z0-9]{1,15}\./, 'and holds the token');
  t.equal(readFileSync(`${tokenFile}.tmp`, 'utf8'), 'planted', 'the planted temp file was not used');
  t.equal(readFileSync(target, 'utf8'), 'untouched', 'nor was anything written through the symlink');
  t.ok(lstatSync(`${tokenFile}.link.tmp`).isSymbolicLink());
});
