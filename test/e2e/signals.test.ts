/**
 * How a started rotor stops: `npm start` sent SIGTERM leaves nothing listening and no rotor
 * process behind; a parent killed outright likewise (rotor notices it was reparented); SIGINT
 * drains and exits 0; a second signal exits at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';
import { BIN, cliEnv, freePort, ROOT, startCli } from './helpers.ts';
import { accepts, alive, descendants, eventually, logLines, LogWatch, type Proc } from './processes.ts';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const FIXTURE = fileURLToPath(new URL('./fixtures/stop-on-signals.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Nothing accepts on `port` and none of `procs` is left, within the guard. */
const allGone = (port: number, procs: Proc[]) => eventually(async () => !procs.some(alive) && !(await accepts(port)));

function started(command: string, args: string[]): { child: ChildProcess; log: LogWatch } {
  const child = spawn(command, args, { cwd: ROOT, env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  return { child, log: new LogWatch(child) };
}

/** Whatever is left of `procs` at the end of the test is killed. */
function cleanUp(t: TapTest, procs: () => Proc[]): void {
  t.teardown(() => {
    for (const proc of procs()) if (alive(proc)) process.kill(proc.pid, 'SIGKILL');
  });
}

t.test('npm start, then SIGTERM to npm: nothing is left listening, no rotor process remains', async (t) => {
  const port = await freePort();
  // package.json's start script runs the compiled CLI (dist/); the arguments after -- go to serve.
  const npm = started('npm', ['start', '--', '--store', 'memory', '--port', String(port)]);
  let below: Proc[] = [];
  cleanUp(t, () => below);
  const { pid } = await npm.log.listening();
  below = descendants(npm.child.pid!);
  t.ok(below.some((proc) => proc.pid === pid), `the listening rotor (pid ${pid}) is below npm: ${below.map((proc) => `${proc.pid} ${proc.command}`).join('; ')}`);

  npm.child.kill('SIGTERM');
  await npm.log.exited;
  t.ok(await allGone(port, below), `port ${port} refuses connections and nothing npm started is left`);
  t.ok(logLines(npm.log.stdout).some((entry) => entry.msg === 'shutting down'), 'rotor drained and said so');
});

t.test('a parent killed outright: rotor shuts down as on SIGTERM; --no-exit-with-parent outlives it', async (t) => {
  for (const watch of [true, false]) {
    const port = await freePort();
    const flags = ['--store', 'memory', '--port', String(port), '--connection-sweep-interval-ms', '100', watch ? '--exit-with-parent' : '--no-exit-with-parent'];
    // A shell that starts rotor and waits for it, as a wrapper script does.
    const shell = started('sh', ['-c', '"$0" "$@" & wait', process.execPath, BIN, 'serve', ...flags]);
    const { pid } = await shell.log.listening();
    const server = descendants(shell.child.pid!).find((proc) => proc.pid === pid);
    cleanUp(t, () => (server ? [server] : []));
    t.ok(server, `rotor (pid ${pid}) is the shell's child`);
    shell.child.kill('SIGKILL');
    await shell.log.exited;
    if (watch) {
      const gone = await allGone(port, [server!]);
      t.ok(gone, gone ? 'rotor stopped and its port refuses connections' : `rotor still runs; it logged: ${shell.log.stdout}`);
      t.equal((await shell.log.line((entry) => entry.msg === 'shutting down')).reason, 'parent exited');
    } else {
      t.ok(await accepts(port), 'with --no-exit-with-parent rotor runs on');
      t.ok(alive(server!), 'its process is there');
      process.kill(server!.pid, 'SIGTERM');
      t.ok(await allGone(port, [server!]), 'until told to stop');
    }
  }
});

t.test('rotor serve exits 0 after SIGINT', async (t) => {
  const port = await freePort();
  const { child, done } = startCli(['serve', '--store', 'memory', '--port', String(port)]);
  await new LogWatch(child).listening();
  child.kill('SIGINT');
  const run = await done;
  t.strictSame([run.code, run.signal], [0, null], run.stderr);
  t.equal(logLines(run.stdout).find((entry) => entry.msg === 'shutting down')?.reason, 'SIGINT');
  t.notOk(await accepts(port), 'nothing listens any more');
});

t.test('a second signal while draining exits at once, 128 + its number', async (t) => {
  // The fixture's stop never finishes, as a drain held by a peer that does not read.
  for (const [first, second, code] of [['SIGTERM', 'SIGINT', 130], ['SIGINT', 'SIGTERM', 143]] as const) {
    const held = started(process.execPath, ['--import', TSX, FIXTURE, 'hold']);
    await held.log.line((entry) => entry.msg === 'ready');
    held.child.kill(first);
    await held.log.line((entry) => entry.msg === 'shutting down');
    held.child.kill(second);
    await held.log.exited;
    t.strictSame([held.child.exitCode, held.child.signalCode], [code, null], `${first}, then ${second}: exit ${code}`);
    t.ok(await held.log.line((entry) => entry.signal === second && /second signal/.test(String(entry.msg))), 'and says why');
  }
  const finishing = started(process.execPath, ['--import', TSX, FIXTURE, 'finish']);
  await finishing.log.line((entry) => entry.msg === 'ready');
  finishing.child.kill('SIGTERM');
  await finishing.log.exited;
  t.strictSame([finishing.child.exitCode, finishing.child.signalCode], [0, null], 'a drain that finishes exits 0');
});
