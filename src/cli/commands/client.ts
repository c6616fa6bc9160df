/** `rotor login | call | logout`: a logged-in client for scripts, the newest token kept in --token-file. */
import { existsSync, readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import type { RotorResponse } from '../../client/index.ts';
import { readPassword } from '../password.ts';
import { clientOptions, withClient } from '../options.ts';

export function clientCommands(y: Argv): Argv {
  return y
    .command(
      'login',
      'log in and keep the token in --token-file',
      (y) => clientOptions(y).demandOption(['token-file', 'user']),
      (args) =>
        withClient(args, async (client) => {
          await client.login(args.user!, await readPassword(args.password), { totp: args.totp });
        }),
    )
    .command(
      'call <verb> <path>',
      'one request as a logged-in client (for scripts); prints the reply body',
      (y) =>
        clientOptions(y)
          .positional('verb', { type: 'string', demandOption: true })
          .positional('path', { type: 'string', demandOption: true })
          .option('data', { type: 'string', describe: 'request body' })
          .option('data-file', { type: 'string', describe: 'request body from a file' })
          .option('content-type', { type: 'string' })
          .option('wait', { type: 'boolean', default: false, describe: 'if work was deferred, ack and wait for its result' })
          .option('include', { alias: 'i', type: 'boolean', default: false, describe: 'print the status line and headers to stderr' }),
      (args) =>
        withClient(args, async (client) => {
          const saved = args['token-file'] && existsSync(args['token-file']) ? readFileSync(args['token-file'], 'utf8').trim() : '';
          if (saved) await client.useToken(saved);
          else if (args.user) await client.login(args.user, await readPassword(args.password), { totp: args.totp });
          else throw new Error('no token: give --token-file with a token in it, or --user');
          const body = args['data-file'] !== undefined ? readFileSync(args['data-file']) : args.data;
          let response = await client.request(args.verb.toUpperCase(), args.path, { body, contentType: args['content-type'] });
          if (args.wait && response.tasks.length > 0) {
            for (const id of response.tasks) response = await client.waitForTask(id);
          }
          if (args.include) printHead(response);
          process.stdout.write(response.body);
          // The token file now holds the newest token; acking tells the server we have it, which
          // lets deferred work start. Without a token file the session ends here.
          if (args['token-file']) await client.ack();
          else await client.logout();
        }),
    )
    .command(
      'logout',
      'end the session in --token-file',
      (y) => clientOptions(y).demandOption('token-file'),
      (args) =>
        withClient(args, async (client) => {
          await client.useToken(readFileSync(args['token-file']!, 'utf8').trim());
          await client.logout();
        }),
    );
}

function printHead(response: RotorResponse): void {
  const lines = [`${response.status}`, ...response.headers.filter(([name]) => name.toLowerCase() !== 'token').map(([n, v]) => `${n}: ${v}`)];
  process.stderr.write(lines.join('\n') + '\n\n');
}
