/** `rotor user add | list | remove`: users in the embedded store or Redis. */
import type { Argv } from 'yargs';
import { DEFAULTS } from '../../config/defaults.ts';
import { addUser } from '../../server/users.ts';
import { PASSWORD_HELP, readPassword } from '../password.ts';
import { storeOptions, withStore, type StoreArgs } from '../options.ts';

export function userCommand(y: Argv): Argv {
  return y
    .command('user', 'manage users (add | list | remove)', (y) =>
      storeOptions(y)
        .command(
          'add <name>',
          'add a user, or replace its password',
          (yy) =>
            yy
              .positional('name', { type: 'string', demandOption: true })
              .option('password', { type: 'string', describe: PASSWORD_HELP })
              .option('totp', { type: 'boolean', default: false, describe: 'also require a TOTP code; prints the otpauth URI' }),
          async (args) => {
            // addUser refuses such a name too, but only after the password prompt: say so before it.
            if (Buffer.byteLength(args.name) > DEFAULTS.auth.maxUserNameBytes) throw new Error(`a user name is at most ${DEFAULTS.auth.maxUserNameBytes} bytes`);
            const password = await readPassword(args.password);
            await withStore(args, async (store) => {
              const { otpauthUri } = await addUser(store, args.name, password, { totp: args.totp });
              console.log(`user ${args.name} saved`);
              if (otpauthUri) console.log(otpauthUri);
            });
          },
        )
        .command('list', 'list users', {}, async (args) => {
          await withStore(args as unknown as StoreArgs, async (store) => {
            for (const user of await store.listUsers()) console.log(`${user.name}${user.totpSecret ? ' (totp)' : ''}`);
          });
        })
        .command(
          'remove <name>',
          'remove a user (their sessions run out on their own)',
          (yy) => yy.positional('name', { type: 'string', demandOption: true }),
          async (args) => {
            await withStore(args, async (store) => {
              if (!(await store.removeUser(args.name))) throw new Error(`no user ${args.name}`);
              console.log(`user ${args.name} removed`);
            });
          },
        )
        .demandCommand(1),
    );
}
