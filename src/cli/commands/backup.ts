/** `rotor backup FILE` / `rotor restore FILE`: the embedded store to one file and back. */
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { backupLmdb, restoreLmdb } from '../../store/lmdb-backup.ts';
import { dataOption } from '../options.ts';

const KEYS_NOTE = (dataDir: string) =>
  `the MAC keys are not in a backup: keep the key file (${join(dataDir, 'keys.json')} unless --key-file) apart from it, as safely; ` +
  'a server with other keys serves the restored users, but their sessions must log in again';

export function backupCommands(y: Argv): Argv {
  return y
    .command(
      'backup <file>',
      'copy the embedded store to FILE (mode 0600), consistent, while servers keep using it',
      (y) =>
        dataOption(y)
          .positional('file', { type: 'string', demandOption: true, describe: 'the backup file (password hashes and TOTP secrets: keep it private)' })
          .option('force', { type: 'boolean', default: false, describe: 'replace FILE if it exists' })
          .option('compact', { type: 'boolean', default: false, describe: 'leave out free pages: smaller, slower to write' }),
      async (args) => {
        const report = await backupLmdb(args.data, args.file, { replace: args.force, compact: args.compact });
        console.log(`backed up ${args.data} to ${report.file}: ${report.users} users, ${report.sessions} sessions, ${report.bytes} bytes`);
        console.error(`rotor: note: ${KEYS_NOTE(args.data)}`);
      },
    )
    .command(
      'restore <file>',
      'make a backup FILE the embedded store of a new --data directory (it never replaces a store: swap directories while the server is stopped)',
      (y) => dataOption(y).positional('file', { type: 'string', demandOption: true, describe: 'a file made by rotor backup' }),
      async (args) => {
        const report = await restoreLmdb(args.file, args.data);
        console.log(`restored ${args.file} into ${report.dataDir}: ${report.users} users, ${report.sessions} sessions`);
        console.error(`rotor: note: ${KEYS_NOTE(args.data)}`);
      },
    );
}
