/**
 * scripts/test-deps.sh, `npm test`'s first step: what the tests need beyond npm packages is
 * there, installed with apt-get (as root), or the run stops with one line naming it. Here on a
 * PATH of our making: nothing at all, or a stand-in apt-get that records what it was asked.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const SCRIPT = fileURLToPath(new URL('../../scripts/test-deps.sh', import.meta.url));
const BASH = '/bin/bash';
const PROGRAMS = ['redis-server', 'redis-cli', 'openssl', 'curl', 'python3', 'chromium'];
// The last: python3's cryptography module (the spec-only sealed client), checked by importing it.
const PACKAGES = ['redis-server', 'redis-tools', 'openssl', 'curl', 'python3', 'chromium', 'python3-cryptography'];
const isRoot = process.getuid?.() === 0;

const dir = mkdtempSync(join(tmpdir(), 'rotor-test-deps-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function runWithPath(path: string) {
  return spawnSync(BASH, [SCRIPT], { env: { PATH: path }, encoding: 'utf8', timeout: 30_000 });
}

t.test('on this machine everything is there (npm test ran it first): nothing to do', async (t) => {
  const r = spawnSync(BASH, [SCRIPT], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout + r.stderr, '', 'silent');
});

t.test('nothing on PATH and no apt-get: stops with one line naming what to install', async (t) => {
  const empty = mkdtempSync(join(dir, 'empty-'));
  const r = runWithPath(empty);
  t.equal(r.status, 1, 'non-zero: the tests do not run');
  const lines = r.stderr.trim().split('\n');
  t.equal(lines.length, 1, `one line: ${r.stderr}`);
  for (const name of new Set([...PROGRAMS, ...PACKAGES])) t.match(lines[0], name, `names ${name}`);
  t.equal(r.stdout, '');
});

/** A stand-in apt-get: logs each call (args, DEBIAN_FRONTEND); `install` puts an executable of each program into its own directory. */
function fakeAptGet(bin: string, log: string, works: boolean): void {
  const programs = PROGRAMS.join(' ');
  writeFileSync(
    join(bin, 'apt-get'),
    `#!${BASH}
echo "$* | DEBIAN_FRONTEND=\${DEBIAN_FRONTEND:-}" >> '${log}'
${works ? '' : 'exit 100'}
if [ "$1" = "install" ]; then
  for p in ${programs}; do printf '#!${BASH}\\n' > '${bin}'/"$p"; /bin/chmod +x '${bin}'/"$p"; done
fi
`,
  );
  chmodSync(join(bin, 'apt-get'), 0o755);
}

t.test('with apt-get: installs what is missing as root, else stops with one line', async (t) => {
  const bin = mkdtempSync(join(dir, 'apt-'));
  const log = join(bin, 'calls.log');
  fakeAptGet(bin, log, true);
  const r = runWithPath(bin);
  if (isRoot) {
    t.equal(r.status, 0, `installed, then everything is there: ${r.stderr}`);
    const calls = readFileSync(log, 'utf8').trim().split('\n');
    t.same(calls, ['update -qq | DEBIAN_FRONTEND=', `install -y -qq ${PACKAGES.join(' ')} | DEBIAN_FRONTEND=noninteractive`], 'apt-get update, then one install of every missing package');
    t.match(r.stderr, /installing redis-server redis-tools openssl curl python3/, 'says what it installs');
  } else {
    t.equal(r.status, 1, 'not root: no install, the tests do not run');
    t.notOk(existsSync(log), 'apt-get not called');
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});

t.test('an apt-get that fails: stops, naming what is still missing', { skip: !isRoot && 'the install branch runs as root only' }, async (t) => {
  const bin = mkdtempSync(join(dir, 'apt-broken-'));
  fakeAptGet(bin, join(bin, 'calls.log'), false);
  const r = runWithPath(bin);
  t.equal(r.status, 1);
  t.match(r.stderr, /apt-get could not provide redis-server redis-cli openssl curl python3/);
});

t.test('every program there but python3 without its cryptography module: that one package, or one line', async (t) => {
  const bin = mkdtempSync(join(dir, 'module-'));
  const log = join(bin, 'calls.log');
  fakeAptGet(bin, log, true);
  // The programs are there; python3 cannot import cryptography until apt-get installs it.
  for (const program of PROGRAMS) writeFileSync(join(bin, program), `#!${BASH}\n${program === 'python3' ? 'exit 1' : ''}\n`, { mode: 0o755 });
  const r = runWithPath(bin);
  if (isRoot) {
    t.equal(r.status, 0, `installed: ${r.stderr}`);
    t.same(readFileSync(log, 'utf8').trim().split('\n'), ['update -qq | DEBIAN_FRONTEND=', 'install -y -qq python3-cryptography | DEBIAN_FRONTEND=noninteractive'], 'only python3-cryptography is installed');
  } else {
    t.equal(r.status, 1, 'not root: the tests do not run');
    t.match(r.stderr, /python3:cryptography.*python3-cryptography/, 'the line names the module and its package');
  }
});
