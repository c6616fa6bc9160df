/**
 * `rotor serve --max-connections --max-connections-per-address --listen-backlog`: the flags reach
 * the listener of a spawned server (one spawn, all three flags).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { getHeader } from '../../src/wire/index.ts';
import { parseFrames, Probe, until } from '../carriers/helpers.ts';

const BIN = fileURLToPath(new URL('../../bin/rotor.js', import.meta.url));
// A guard against a hung child only: on a loaded machine a start can take many seconds.
const START_GUARD_MS = 60_000;

const port = await new Promise<number>((resolve) => {
  const probe = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address() as net.AddressInfo;
    probe.close(() => resolve(port));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'rotor-limits-'));
const env = { ...process.env };
delete env.NODE_OPTIONS; // tap's process tracking is no use to the child
const child = spawn(
  process.execPath,
  [BIN, 'serve', '--store', 'memory', '--data', dir, '--port', String(port), '--log-level', 'warn',
    '--max-connections', '2', '--max-connections-per-address', '1', '--listen-backlog', '100'],
  { stdio: ['ignore', 'ignore', 'pipe'], env },
);
let stderr = '';
child.stderr!.on('data', (chunk) => (stderr += chunk));
const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
t.teardown(async () => {
  child.kill('SIGTERM');
  await exited;
  rmSync(dir, { recursive: true, force: true });
});

/** A connection from `from`, once the child listens. */
async function connectFrom(from: string): Promise<Probe> {
  const deadline = Date.now() + START_GUARD_MS;
  for (;;) {
    try {
      return await Probe.open(port, from);
    } catch (err) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`rotor serve did not come up: ${String(err)}; it said ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** One ping on `probe`: the status and Error code of its answer. */
async function ping(probe: Probe): Promise<{ status: number; code: string | undefined }> {
  probe.socket.write('GET /rotor/ping ROTOR/1\r\n\r\n');
  await until(() => parseFrames(probe.bytes).length > 0 || probe.closed, 5_000);
  const [reply] = parseFrames(probe.bytes);
  return { status: reply?.status ?? 0, code: reply && getHeader(reply, 'Error') };
}
const served = { status: 200, code: undefined };
const refused = { status: 503, code: 'ROTOR_E_TOO_MANY_CONNECTIONS' };

t.test('the flags reach the listener', async (t) => {
  const first = await connectFrom('127.0.0.1');
  t.strictSame(await ping(first), served, 'the first connection from 127.0.0.1 is served');
  const second = await connectFrom('127.0.0.1');
  t.strictSame(await ping(second), refused, '--max-connections-per-address 1: the second from 127.0.0.1 is refused');
  const other = await connectFrom('127.0.0.2');
  t.strictSame(await ping(other), served, 'one from 127.0.0.2 is served');
  const third = await connectFrom('127.0.0.3');
  t.strictSame(await ping(third), refused, '--max-connections 2: a third address is refused too');
  for (const probe of [first, second, other, third]) probe.socket.destroy();

  const { stdout } = await promisify(execFile)('ss', ['-ltnH', `sport = :${port}`]);
  const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
  t.equal(Number(stdout.trim().split(/\s+/)[2]), Math.min(100, somaxconn), '--listen-backlog 100 (Send-Q of the listening socket)');
});
