/** What several commands share: the store options and opening a store, the client options and making a client. */
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import type { Argv } from 'yargs';
import { DEFAULTS } from '../config/defaults.ts';
import { RotorClient, tcpConnect, TlsCertificateError, TransportError, type Connect } from '../client/index.ts';
import { loadOrCreateKeyFile, type KeyMaterial } from '../keys/file.ts';
import type { RandomSource } from '../session/random.ts';
import { openStore } from '../store/index.ts';
import { openDataDirWarning } from './keys.ts';
import { PASSWORD_HELP } from './password.ts';

export const DATA_OPTION = { type: 'string', default: './rotor-data', describe: 'directory of the embedded store and the key file' } as const;

export const dataOption = (y: Argv) => y.option('data', DATA_OPTION);

export const storeOptions = (y: Argv) =>
  dataOption(y)
    .option('store', { type: 'string', default: 'lmdb', describe: 'memory | lmdb (embedded, durable) | redis://host:port/db | redis-cluster://host:port,host:port,… (?wait=0|1: the safe mode, on by default on a cluster)' })
    .option('fsync', { type: 'boolean', default: false, describe: 'embedded store: fsync every commit (safe against power loss, slower)' });

export const clientOptions = (y: Argv) =>
  y
    .option('host', { type: 'string', default: DEFAULTS.host })
    .option('port', { type: 'number', default: DEFAULTS.port })
    .option('token-file', { type: 'string', describe: 'where the newest token is kept between calls' })
    .option('user', { type: 'string', describe: 'log in as this user (when there is no token file yet)' })
    .option('password', { type: 'string', describe: PASSWORD_HELP })
    .option('totp', { type: 'string', describe: 'TOTP code, for users that have one' })
    .option('timeout', { type: 'number', default: 10_000, describe: 'ms to wait for each response' })
    .option('tls', { type: 'boolean', default: false, describe: "connect with TLS; the server's certificate is checked against the system's CAs, for --host (--ca, --servername and --insecure imply --tls)" })
    .option('ca', { type: 'string', describe: "PEM file of the CA, or of the server's own self-signed certificate, to trust instead of the system's CAs" })
    .option('servername', { type: 'string', describe: 'the name the certificate must be issued for (also sent as SNI), when it is not --host' })
    // No default: yargs would take a default false for given, and refuse every --ca as a conflict.
    .option('insecure', {
      type: 'boolean',
      describe: "FOR TESTING ONLY: do not check the server's certificate at all. Anyone on the path can then pose as the server and read or change the session, password included",
    })
    .conflicts('insecure', 'ca')
    .group(['tls', 'ca', 'servername', 'insecure'], 'TLS:');

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

export type ClientArgs = {
  host: string;
  port: number;
  'token-file'?: string | undefined;
  timeout: number;
  tls: boolean;
  ca?: string | undefined;
  servername?: string | undefined;
  insecure?: boolean | undefined;
};

/**
 * Run `work` with a client made from the flags, closed afterwards. A connection the server
 * closed before answering, without --tls, gets a hint: that is what a TLS server does to it.
 */
export async function withClient(args: ClientArgs, work: (client: RotorClient) => Promise<void>): Promise<void> {
  const client = makeClient(args);
  try {
    await work(client);
  } catch (err) {
    if (err instanceof TransportError && err.message === 'connection closed' && !wantsTls(args)) {
      throw new TransportError('connection closed before an answer (a TLS server does that to a plain connection: if it is one, add --tls)');
    }
    throw err;
  } finally {
    client.close();
  }
}

function makeClient(args: ClientArgs): RotorClient {
  const file = args['token-file'];
  if (args.insecure) console.error("rotor: warning: --insecure: the server's certificate is not checked; use it for tests only");
  return new RotorClient({
    connect: withCertificateHint(tcpConnect({ host: args.host, port: args.port, timeoutMs: args.timeout, tls: clientTls(args) })),
    // Written atomically before the token is ever used or acked: a crash leaves the old or the new token, never half of one.
    onToken: file
      ? (token) => {
          // A fresh name, created exclusively (O_EXCL: never an existing file, never through a
          // symlink), so the token file is 0600 whatever was lying around.
          const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
          writeFileSync(tmp, token ? `${token}\n` : '', { mode: 0o600, flag: 'wx' });
          renameSync(tmp, file);
        }
      : undefined,
  });
}

export type KeyFileArgs = { store: string; data: string; 'key-file'?: string | undefined };

/** The key file's path: --key-file, or <data>/keys.json. */
export const keyFilePath = (args: KeyFileArgs): string => args['key-file'] ?? join(args.data, 'keys.json');

/**
 * What a server's key ring is unwrapped with: the key file (--key-file, default <data>/keys.json),
 * made there when missing. Undefined for a memory store without --key-file: its ring, like its
 * sessions, lives in the process only. Keys come before the store: a key file others can read
 * stops rotor first.
 */
export function serverKeys(args: KeyFileArgs, random: RandomSource): KeyMaterial | undefined {
  if (args.store === 'memory' && args['key-file'] === undefined) return undefined;
  return loadOrCreateKeyFile(keyFilePath(args), random);
}

/** The data directory's warning, if rotor uses it: for the embedded store, or for keys kept in it. */
export function openDataDirWarningFor(args: StoreArgs, keysInDataDir: boolean): string | undefined {
  const embedded = args.store === 'lmdb' || args.store === '';
  return embedded || keysInDataDir ? openDataDirWarning(args.data) : undefined;
}

const wantsTls = (args: ClientArgs): boolean => args.tls || args.ca !== undefined || args.servername !== undefined || args.insecure === true;

/** The TLS options the client flags ask for; undefined for plain TCP. */
function clientTls(args: ClientArgs): ConnectionOptions | undefined {
  if (!wantsTls(args)) return undefined;
  return {
    ...(args.ca !== undefined ? { ca: readFileSync(args.ca) } : {}),
    ...(args.servername !== undefined ? { servername: args.servername } : {}),
    ...(args.insecure ? { rejectUnauthorized: false } : {}),
  };
}

/** A refused certificate, with the flag that fixes it. */
function withCertificateHint(connect: Connect): Connect {
  return () =>
    connect().catch((err: unknown) => {
      if (!(err instanceof TlsCertificateError)) throw err;
      const hint =
        err.code === 'ERR_TLS_CERT_ALTNAME_INVALID'
          ? 'it is issued for other names: give the one it is for with --servername NAME'
          : 'trust its issuer (or the certificate itself, if self-signed) with --ca FILE';
      throw new TlsCertificateError(`${err.message} (${err.code}): ${hint}`, err.code);
    });
}
