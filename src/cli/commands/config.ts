/** `rotor config print`: the settings `rotor serve` would run with, from the same sources and flags. */
import type { Argv } from 'yargs';
import { configFromArgs, serveOptions } from './serve.ts';

export function configCommand(y: Argv): Argv {
  return y.command('config', "rotor serve's settings (print)", (y) =>
    y
      .command(
        'print',
        'print the effective settings as JSON (a config file in that form is what --config takes): defaults < --config file < ROTOR_* env < flags; takes every flag of rotor serve',
        serveOptions,
        async (args) => {
          console.log(JSON.stringify(configFromArgs(args), null, 2));
        },
      )
      .demandCommand(1),
  );
}
