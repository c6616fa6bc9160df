/**
 * deploy/: there is no Docker daemon or systemd to run them here, so the test reads the
 * Dockerfile and the unit for what they promise (two stages, production dependencies only, a
 * user that is not root, a health check, node as the main process; rotor as user rotor, SIGTERM
 * and a stop timeout above the shutdown grace, the hardening) and then runs what they would
 * run: the image's CMD with its ENV, its HEALTHCHECK command against that server, the unit's
 * ExecStart — each on loopback, with the paths of this checkout.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS } from '../../src/config/defaults.ts';
import { cliEnv, connectWhenUp, freePort, ROOT, type Run } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'rotor-deploy-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

interface Instruction {
  op: string;
  args: string;
}

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function dockerfile(text: string): Instruction[] {
  const logical = text.replace(/\\\n/g, ' ').split('\n');
  return logical
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [op, ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

/** Stages by FROM; each stage's instructions after its FROM. */
function stages(instructions: Instruction[]): Array<{ from: string; body: Instruction[] }> {
  const out: Array<{ from: string; body: Instruction[] }> = [];
  for (const instruction of instructions) {
    if (instruction.op === 'FROM') out.push({ from: instruction.args, body: [] });
    else out[out.length - 1].body.push(instruction);
  }
  return out;
}

/** `KEY=value KEY2=value2` of ENV lines (values without spaces or quotes, as in deploy/). */
function envOf(body: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of body.filter((i) => i.op === 'ENV')) {
    for (const pair of args.split(/\s+/)) {
      const eq = pair.indexOf('=');
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}

/** A unit file's sections: name → key → every value given (in order). */
function unitFile(text: string): Record<string, Record<string, string[]>> {
  const sections: Record<string, Record<string, string[]>> = {};
  let current: Record<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = sections[header[1]] = {};
      continue;
    }
    const eq = line.indexOf('=');
    (current![line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return sections;
}

/** Run a command to its end. */
function run(command: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0], command.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Start a server command, wait until `port` accepts, give `probe` its chance, then stop it with `signal`. */
async function whileRunning<T>(command: string[], env: NodeJS.ProcessEnv, port: number, signal: NodeJS.Signals, probe: () => Promise<T>): Promise<{ probed: T; exit: Run }> {
  const child = spawn(command[0], command.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<Run>((resolve) => child.on('close', (code, sig) => resolve({ code, signal: sig, stdout, stderr })));
  let gone = false;
  void exited.then(() => (gone = true));
  try {
    await connectWhenUp(port, () => gone).then(
      (conn) => conn.destroy(),
      async (err) => {
        throw new Error(`${command.join(' ')} did not come up: ${err.message}: ${JSON.stringify(await exited)}`);
      },
    );
    const probed = await probe();
    child.kill(signal);
    return { probed, exit: await exited };
  } finally {
    child.kill('SIGKILL');
  }
}

const docker = stages(dockerfile(readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8')));
const [build, runtime] = [docker[0], docker[docker.length - 1]];
const ops = (stage: { body: Instruction[] }, op: string) => stage.body.filter((i) => i.op === op);

t.test('Dockerfile: a build stage with dev dependencies, a runtime with production ones and dist/', async (t) => {
  t.equal(docker.length, 2, 'two stages');
  t.match(build.from, /^node:20\S* AS build$/i, 'the first builds');
  t.match(runtime.from, /^node:20/, 'the runtime is node 20 too');
  const buildRuns = ops(build, 'RUN').map((i) => i.args);
  t.ok(buildRuns.some((r) => /^npm ci\b/.test(r)), 'npm ci (with dev dependencies: prepare builds dist/)');
  t.ok(buildRuns.some((r) => /^npm prune --omit=dev\b/.test(r)), 'then the dev dependencies are pruned');
  const copies = ops(runtime, 'COPY').map((i) => i.args);
  for (const what of ['node_modules', 'dist', 'protocol', 'package.json']) {
    t.ok(copies.some((c) => c.startsWith('--from=build ') && c.includes(`/app/${what}`)), `the runtime copies ${what} from the build stage`);
  }
  t.notOk(ops(runtime, 'RUN').some((i) => /\bnpm\b/.test(i.args)), 'and runs no npm');

  // Every file the build stage copies must survive the .dockerignore next to the Dockerfile.
  const allowed = readFileSync(join(ROOT, 'deploy/Dockerfile.dockerignore'), 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('!'))
    .map((line) => line.slice(1).replace(/\/$/, ''));
  const sources = ops(build, 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  for (const source of sources) t.ok(allowed.includes(source.replace(/\/$/, '')), `${source} is let through the .dockerignore`);
  t.notOk(allowed.some((a) => /rotor-data|node_modules|keys/.test(a)), 'no data, keys or node_modules reach the builder');
});

t.test('Dockerfile: runs as a user of its own, node as PID 1, a health check that needs no curl', async (t) => {
  const users = ops(runtime, 'USER').map((i) => i.args);
  t.equal(users.length, 1);
  t.notMatch(users[0], /^(root|0)(:|$)/, `USER ${users[0]} is not root`);
  t.ok(ops(runtime, 'RUN').some((i) => i.args.includes(`useradd --system`) && i.args.includes(users[0])), 'a system user made in the image');
  const cmd = JSON.parse(ops(runtime, 'CMD')[0].args) as string[];
  t.strictSame(cmd.slice(0, 3), ['node', 'dist/cli/main.js', 'serve'], 'CMD is the exec form of node itself, not npm start');
  t.equal(ops(runtime, 'ENTRYPOINT').length, 0, 'no entrypoint wraps it');
  const health = ops(runtime, 'HEALTHCHECK')[0]?.args ?? '';
  t.match(health, /CMD \["node", "-e", /, 'the health check is node, exec form');
  t.match(health, /\/readyz/, 'asking readiness');
});

t.test("the image's CMD with its ENV serves, passes its HEALTHCHECK, and exits 0 on its STOPSIGNAL", async (t) => {
  const image = envOf(runtime.body);
  t.ok(image.ROTOR_OBSERVABILITY_METRICS_PORT, 'the image turns the operations listener on');
  const [port, metricsPort] = [await freePort(), await freePort()];
  // The image's settings, but on loopback and free ports: a test opens nothing beyond this machine.
  const env = cliEnv({ ...image, ROTOR_HOST: '127.0.0.1', ROTOR_PORT: String(port), ROTOR_OBSERVABILITY_METRICS_PORT: String(metricsPort) });
  const cmd = (JSON.parse(ops(runtime, 'CMD')[0].args) as string[]).map((arg) => (arg === '/var/lib/rotor' ? join(tmp, 'image-data') : arg));
  const health = JSON.parse(/CMD (\[.*\])$/.exec(ops(runtime, 'HEALTHCHECK')[0].args)![1]) as string[];
  const check = () => run([process.execPath, ...health.slice(1)], env);
  const stopSignal = (ops(runtime, 'STOPSIGNAL')[0]?.args ?? 'SIGTERM') as NodeJS.Signals;
  const { probed, exit } = await whileRunning([process.execPath, ...cmd.slice(1)], env, port, stopSignal, check);
  t.equal(probed.code, 0, `the health check passes against the running server (${probed.stderr})`);
  t.strictSame([exit.code, exit.signal], [0, null], `${stopSignal}: it drains and exits 0 (${exit.stderr})`);
  t.equal((await check()).code, 1, 'with the server gone the health check fails');
});

const unit = unitFile(readFileSync(join(ROOT, 'deploy/rotor.service'), 'utf8'));
const service = unit.Service ?? {};
const one = (key: string) => service[key]?.at(-1);

t.test('rotor.service: node runs rotor serve as rotor, SIGTERM, a stop timeout above the grace, hardened', async (t) => {
  const exec = one('ExecStart')!.split(/\s+/);
  t.equal(exec[0], '/usr/bin/node', 'node itself');
  t.match(exec[1], /\/dist\/cli\/main\.js$/);
  t.equal(exec[2], 'serve');
  t.equal(one('User'), 'rotor');
  t.equal(one('KillSignal'), 'SIGTERM');
  const stopSeconds = Number(one('TimeoutStopSec'));
  t.ok(stopSeconds * 1000 >= 2 * DEFAULTS.connection.shutdownGraceMs, `TimeoutStopSec ${stopSeconds} s leaves room past the ${DEFAULTS.connection.shutdownGraceMs} ms grace`);
  for (const [key, value] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['PrivateTmp', 'yes']]) t.equal(one(key), value, `${key}=${value}`);
  const data = exec[exec.indexOf('--data') + 1];
  t.ok(service.ReadWritePaths?.join(' ').split(/\s+/).includes(data), `ReadWritePaths= holds the data directory ${data}`);
  t.equal(unit.Install?.WantedBy?.[0], 'multi-user.target');
});

t.test("the unit's ExecStart serves and stops cleanly on its KillSignal", async (t) => {
  const port = await freePort();
  const exec = one('ExecStart')!
    .split(/\s+/)
    .map((arg) => arg.replace('/usr/bin/node', process.execPath).replace('/opt/rotor/', ROOT).replace('/var/lib/rotor', join(tmp, 'unit-data')));
  const unitEnv = Object.fromEntries((service.Environment ?? []).map((pair) => pair.split('=') as [string, string]));
  const env = cliEnv({ ...unitEnv, ROTOR_PORT: String(port) });
  const { exit } = await whileRunning(exec, env, port, one('KillSignal') as NodeJS.Signals, async () => undefined);
  t.strictSame([exit.code, exit.signal], [0, null], `it exits 0 (${exit.stderr})`);
  t.match(exit.stdout, /rotor is listening/);
});
