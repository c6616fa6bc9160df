/** `rotor bench`: load-test a rotor on loopback. */
import type { Argv } from 'yargs';
import { DEFAULTS } from '../../config/defaults.ts';
import { BENCH_DEFAULTS, formatResult, runBench, SCENARIOS, type Scenario, type SpawnOptions } from '../../bench/index.ts';

export function benchCommand(y: Argv): Argv {
  return y
    .command(
      'bench',
      'load-test a rotor (loopback only): C connections × P requests in flight, for a duration or a count',
      (y) =>
        y
          .option('scenario', { choices: [...SCENARIOS], default: BENCH_DEFAULTS.scenario, describe: 'rotate = message + ack loop; meta = metadata exchange; tasks = deferred work; seats = take, heartbeat, give back a licence seat; quota = rotate on access-code sessions; sealed = rotate on sealed application sessions; login = login storm; ping' })
          .option('carrier', { choices: ['tcp', 'tls', 'http', 'ws'], default: 'tcp' })
          .option('host', { type: 'string', default: '127.0.0.1', describe: 'a running server (loopback addresses only)' })
          .option('port', { type: 'number', default: DEFAULTS.port, describe: 'its port (the HTTP port for http and ws)' })
          .option('spawn', { choices: ['rotor', 'echo', 'http-echo'], describe: 'start this server in a child process instead of driving a running one' })
          .option('store', { type: 'string', default: 'memory', describe: 'with --spawn rotor: memory | lmdb | redis://… | redis-cluster://…' })
          .option('preload', { type: 'number', default: 0, describe: 'with --spawn: idle sessions stored before the run' })
          .option('server-cpu', { type: 'number', describe: 'with --spawn: pin the server to this CPU (taskset)' })
          .option('cpu', { type: 'number', describe: 'pin the load generator to this CPU (taskset)' })
          .option('connections', { alias: 'c', type: 'number', default: BENCH_DEFAULTS.connections })
          .option('pipeline', { alias: 'p', type: 'number', default: BENCH_DEFAULTS.pipeline, describe: 'requests in flight per connection (one session each)' })
          .option('duration', { type: 'number', default: BENCH_DEFAULTS.durationMs, describe: 'measured ms' })
          .option('warmup', { type: 'number', default: BENCH_DEFAULTS.warmupMs, describe: 'ms before measuring' })
          .option('count', { type: 'number', describe: 'stop after this many measured requests' })
          .option('user', { type: 'string', default: BENCH_DEFAULTS.user })
          .option('password', { type: 'string', default: BENCH_DEFAULTS.password })
          .option('timeout', { type: 'number', default: BENCH_DEFAULTS.timeoutMs, describe: 'ms to wait for one response' })
          .option('json', { type: 'boolean', default: false, describe: 'print the result as JSON' })
          .option('progress', { type: 'boolean', describe: 'a progress line on stderr (default: when stderr is a terminal)' }),
      async (args) => {
        const result = await runBench({
          scenario: args.scenario as Scenario,
          carrier: args.carrier,
          host: args.host,
          port: args.port,
          spawn: args.spawn ? { server: args.spawn as SpawnOptions['server'], store: args.store, preload: args.preload, cpu: args['server-cpu'], http: args.carrier === 'http' || args.carrier === 'ws' } : undefined,
          connections: args.connections,
          pipeline: args.pipeline,
          durationMs: args.duration,
          warmupMs: args.warmup,
          count: args.count,
          user: args.user,
          password: args.password,
          timeoutMs: args.timeout,
          progress: args.progress,
          cpu: args.cpu,
        }).catch((err: Error) => {
          throw loginHint(err, args);
        });
        console.log(args.json ? JSON.stringify(result) : formatResult(result));
      },
    );
}

/**
 * A refused login, with what to do about it: the bench user is an ordinary user of the target,
 * which a fresh server does not have. (runBench says `login as "…" failed: CODE`.)
 */
function loginHint(err: Error, args: { user: string; password: string; spawn?: string | undefined }): Error {
  if (args.spawn || !/ failed: ROTOR_E_AUTH_FAILED$/.test(err.message)) return err;
  const defaults = args.user === BENCH_DEFAULTS.user && args.password === BENCH_DEFAULTS.password;
  const hint = defaults
    ? `no user ${args.user} with password ${args.password} there: add it with \`rotor user add ${args.user}\` (type ${args.password} at the prompt) or give --user/--password`
    : 'check --user and --password';
  return new Error(`${err.message}: ${hint}`);
}
