/** What several commands share: the store options and opening a store, the client options and making a client. */
import { renameSync, writeFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { DEFAULTS } from '../config/defaults.ts';
import { RotorClient, tcpConnect } from '../client/index.ts';
import { openStore } from '../store/index.ts';
import { openDataDirWarning } from './keys.ts';
import { PASSWORD_HELP } from './password.ts';

export const storeOptions = (y: Argv) =>
  y
    .option('store', { type: 'string', default: 'lmdb', describe: 'memory | lmdb (embedded, durable) | redis://host:port/db' })
    .option('data', { type: 'string', default: './rotor-data', describe: 'directory of the embedded store and the key file' })
    .option('fsync', { type: 'boolean', default: false, describe: 'embedded store: fsync every commit (safe against power loss, slower)' });

export const clientOptions = (y: Argv) =>
  y
    .option('host', { type: 'string', default: DEFAULTS.host })
    .option('port', { type: 'number', default: DEFAULTS.port })
    .option('token-file', { type: 'string', describe: 'where the newest token is kept between calls' })
    .option('user', { type: 'string', describe: 'log in as this user (when there is no token file yet)' })
    .option('password', { type: 'string', describe: PASSWORD_HELP })
    .option('totp', { type: 'string', describe: 'TOTP code, for users that have one' })
    .option('timeout', { type: 'number', default: 10_000, describe: 'ms to wait for each response' });

export type StoreArgs = { store: string; data: string; fsync: boolean };

export async function withStore(args: StoreArgs, work: (store: Awaited<ReturnType<typeof openStore>>) => Promise<void>): Promise<void> {
  if (args.store === 'memory') throw new Error('users of a memory store live only inside its server; use the default embedded store or redis');
  const warning = openDataDirWarningFor(args, false);
  if (warning) console.error(`rotor: warning: ${warning}`);
  const store = await openStore(args.store, { dataDir: args.data, fsync: args.fsync });
  try {
    await work(store);
  } finally {
    await store.close();
  }
}

export type ClientArgs = { host: string; port: number; 'token-file'?: string; timeout: number };

export function makeClient(args: ClientArgs): RotorClient {
  const file = args['token-file'];
  return new RotorClient({
    connect: tcpConnect({ host: args.host, port: args.port, timeoutMs: args.timeout }),
    // Written atomically before the token is ever used or acked: a crash leaves the old or the new token, never half of one.
    onToken: file
      ? (token) => {
          writeFileSync(`${file}.tmp`, token ? `${token}\n` : '', { mode: 0o600 });
          renameSync(`${file}.tmp`, file);
        }
      : undefined,
  });
}

/** The data directory's warning, if rotor uses it: for the embedded store, or for keys kept in it. */
export function openDataDirWarningFor(args: StoreArgs, keysInDataDir: boolean): string | undefined {
  const embedded = args.store === 'lmdb' || args.store === '';
  return embedded || keysInDataDir ? openDataDirWarning(args.data) : undefined;
}
