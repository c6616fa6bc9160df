/**
 * Backing up and restoring the embedded store (`rotor backup` / `rotor restore`).
 *
 * A backup is one file: LMDB's data file, copied from one read transaction while servers keep
 * using the store (hot and consistent: every commit before the copy began, none after). It
 * holds password hashes and TOTP secrets, so it is written mode 0600 and only appears under its
 * name once complete. It does not hold the MAC keys (the key file): tokens of a restored store
 * verify only on a server that has the same keys.
 *
 * A restore puts such a file in place as a data directory's data.mdb. It never runs while a
 * process has that store open — LMDB holds a POSIX lock on lock.mdb for as long as it does,
 * which Linux lists in /proc/locks — and never replaces a store: only a directory without one
 * is restored into (a server in another PID namespace holds its lock unseen).
 */
import { chmodSync, closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { LmdbStore } from './lmdb.ts';

const DATA_FILE = 'data.mdb';
const LOCK_FILE = 'lock.mdb';

export interface BackupOptions {
  /** Replace an existing file at the backup's path. */
  replace?: boolean | undefined;
  /** Leave out free pages (smaller, slower to write). */
  compact?: boolean | undefined;
}

export interface BackupReport {
  file: string;
  bytes: number;
  users: number;
  sessions: number;
}

/** Copy the embedded store in `dataDir` to `file`, while servers may be using it. */
export async function backupLmdb(dataDir: string, file: string, options: BackupOptions = {}): Promise<BackupReport> {
  if (!existsSync(join(dataDir, DATA_FILE))) throw new Error(`no embedded store in ${dataDir} (no ${DATA_FILE})`);
  if (!options.replace && existsSync(file)) throw new Error(`${file} exists: give another name, or --force to replace it`);
  // A private directory next to the target: the copy is nobody else's while it is written, and
  // the rename that publishes it stays on one file system.
  const staging = mkdtempSync(join(dirname(file), `.${basename(file)}.`));
  try {
    await withStore(dataDir, (store) => store.snapshotTo(staging, { compact: options.compact }));
    const copy = join(staging, DATA_FILE);
    chmodSync(copy, 0o600);
    // What the copy holds, read from the copy: it also proves the copy opens as a store.
    const held = await contents(staging);
    syncFile(copy);
    renameSync(copy, file);
    syncFile(dirname(file));
    return { file, bytes: statSync(file).size, ...held };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

export interface RestoreReport {
  dataDir: string;
  users: number;
  sessions: number;
}

/** Put the backup `file` in place as the embedded store of `dataDir`, which no process may have open. */
export async function restoreLmdb(file: string, dataDir: string): Promise<RestoreReport> {
  if (!statSync(file).isFile()) throw new Error(`${file} is not a file`);
  refuseIfOpen(dataDir);
  // Never over an existing store: a server in another PID namespace (a second container on the
  // same volume) holds its lock unseen by /proc/locks, and would go on writing to a replaced file.
  if (existsSync(join(dataDir, DATA_FILE))) {
    throw new Error(`${dataDir} already holds a store, and restore never replaces one: restore into a new directory, then point the server at it (or swap the directories while every server is stopped)`);
  }
  if (mkdirSync(dataDir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dataDir, 0o700);
  // Checked where it will live: a file that does not open as rotor's store goes no further.
  const staging = mkdtempSync(join(dataDir, '.restore-'));
  try {
    const copy = join(staging, DATA_FILE);
    copyFileSync(file, copy);
    chmodSync(copy, 0o600);
    const restored = await contents(staging);
    syncFile(copy);
    // A server started meanwhile would keep writing to the file about to be replaced.
    refuseIfOpen(dataDir);
    if (existsSync(join(dataDir, DATA_FILE))) throw new Error(`${dataDir}: a store appeared there while restoring; nothing was replaced`);
    renameSync(copy, join(dataDir, DATA_FILE));
    syncFile(dataDir);
    return { dataDir, ...restored };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/**
 * The processes that have the store in `dataDir` open (LMDB's lock on lock.mdb, from
 * /proc/locks), this one excepted; undefined where the system does not say (no /proc/locks).
 */
export function processesUsing(dataDir: string): number[] | undefined {
  const lockFile = join(dataDir, LOCK_FILE);
  if (!existsSync(lockFile)) return [];
  let table: string;
  try {
    table = readFileSync('/proc/locks', 'utf8');
  } catch {
    return undefined;
  }
  const { dev, ino } = statSync(lockFile, { bigint: true });
  // /proc/locks names a file `MAJOR:MINOR:INODE`, the device numbers in hex (fs/locks.c).
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${ino}`;
  const pids = new Set<number>();
  for (const line of table.split('\n')) {
    // `1: POSIX  ADVISORY  READ 2462 fe:00:2222321 0 0` (a blocked waiter's line has `->` first).
    const fields = line.replace('->', '').trim().split(/\s+/);
    if (fields[1] === 'POSIX' && fields[5] === id) pids.add(Number(fields[4]));
  }
  pids.delete(process.pid);
  return [...pids];
}

function refuseIfOpen(dataDir: string): void {
  const pids = processesUsing(dataDir);
  if (pids === undefined) {
    throw new Error(`cannot tell whether a server has ${dataDir} open (this system has no /proc/locks): stop it, delete ${join(dataDir, LOCK_FILE)}, and restore again`);
  }
  if (pids.length > 0) throw new Error(`the store in ${dataDir} is open in process ${pids.join(', ')} (a running rotor?): stop it before restoring`);
}

async function contents(dataDir: string): Promise<{ users: number; sessions: number }> {
  return withStore(dataDir, async (store) => {
    let sessions = 0;
    for await (const _ of store.listSessions()) sessions++;
    return { users: (await store.listUsers()).length, sessions };
  });
}

async function withStore<T>(dataDir: string, work: (store: LmdbStore) => Promise<T>): Promise<T> {
  const store = await LmdbStore.open(dataDir);
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

function syncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
