/**
 * The `rotor` command: serve, manage users, and act as a client for scripts. One file per
 * command under commands/; every subcommand has --help.
 */
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { RotorClientError } from '../client/index.ts';
import { appCommand } from './commands/app.ts';
import { backupCommands } from './commands/backup.ts';
import { benchCommand } from './commands/bench.ts';
import { clientCommands } from './commands/client.ts';
import { configCommand } from './commands/config.ts';
import { serveCommand } from './commands/serve.ts';
import { tokenServerCommand } from './commands/token-server.ts';
import { keysCommand } from './commands/keys.ts';
import { lotCommand } from './commands/lot.ts';
import { poolCommand } from './commands/pool.ts';
import { sessionCommand } from './commands/session.ts';
import { templateCommand } from './commands/template.ts';
import { userCommand } from './commands/user.ts';
import { rotorVersion } from './version.ts';

const COMMANDS: Array<(y: Argv) => Argv> = [serveCommand, configCommand, userCommand, keysCommand, poolCommand, templateCommand, lotCommand, appCommand, sessionCommand, backupCommands, clientCommands, benchCommand, tokenServerCommand];

async function main(): Promise<void> {
  const cli = COMMANDS.reduce((y, command) => command(y), yargs(hideBin(process.argv)).scriptName('rotor').usage('$0 <command>\n\nA rotating-token session server. See README.md and spec.md.'));
  await cli
    .demandCommand(1)
    .strict()
    .recommendCommands()
    .help()
    .alias('help', 'h')
    .version(rotorVersion())
    .alias('version', 'v')
    .fail((message, err, y) => {
      if (err) {
        const code = err instanceof RotorClientError ? ` (${err.code})` : '';
        console.error(`rotor: ${err.message}${code}`);
      } else if (message.startsWith('Did you mean')) {
        // A typo: the suggestion is the answer, a page of help would bury it.
        console.error(`rotor: no such command. ${message} (rotor --help lists them)`);
      } else {
        console.error(y.help().toString());
        console.error(`\nrotor: ${message}`);
      }
      process.exit(1);
    })
    .parseAsync();
}

await main();
