/**
 * Apps and their instances in the store's catalog (spec §12): what `rotor app …` changes and an
 * open reads. An app's record holds its public key only; its private key is printed once, at
 * `add`, and kept nowhere.
 */
import { createPublicKey } from 'node:crypto';
import { RotorError } from '../errors.ts';
import type { RandomSource } from '../session/random.ts';
import type { CatalogEntry, Store } from '../store/types.ts';
import { changeRecord } from '../store/records.ts';
import { ed25519Private, rawPublicKey } from './proof.ts';
import { APP, APP_INSTANCE, instanceRecordId, type AppRecord, type InstancePolicy, type InstanceRecord } from './types.ts';

/** What an instance id may be: a host name or an address (spec §12). */
export const INSTANCE_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** What an app id is: 16 base64url characters (12 random bytes). */
export const APP_ID = /^[A-Za-z0-9_-]{16}$/;
const APP_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export interface NewApp {
  readonly id: string;
  /** base64url of the 32-byte Ed25519 private key (its seed): shown once, stored nowhere. */
  readonly key: string;
  readonly record: AppRecord;
}

/** A fresh app id and Ed25519 key (its seed, the app key) with its public half, from `random`. */
export function freshAppKeys(random: RandomSource): { id: string; key: string; publicKey: string } {
  const seed = random(32);
  const publicKey = rawPublicKey(createPublicKey(ed25519Private(seed))).toString('base64url');
  return { id: random(12).toString('base64url'), key: seed.toString('base64url'), publicKey };
}

/** Register an app: a fresh id and Ed25519 key pair; the store keeps the public half. */
export async function addApp(store: Store, name: string, instances: InstancePolicy, now: number, random: RandomSource): Promise<NewApp> {
  if (!APP_NAME.test(name)) throw new RotorError('ROTOR_E_BAD_REQUEST', 'an app name is 1–64 of A-Z a-z 0-9 . _ -');
  if ((await listApps(store)).some((app) => app.value.name === name)) throw new RotorError('ROTOR_E_BAD_REQUEST', `an app named ${name} exists already`);
  const { id, key, publicKey } = freshAppKeys(random);
  const record: AppRecord = { name, publicKey, instances, createdAt: now };
  if (!(await store.createRecords<AppRecord>(APP, [{ id, value: record }]))) throw new RotorError('ROTOR_E_CONFLICT', 'that app id exists: try again');
  return { id, key, record };
}

export function listApps(store: Store): Promise<CatalogEntry<AppRecord>[]> {
  return store.listRecords<AppRecord>(APP);
}

export async function loadApp(store: Store, id: string): Promise<AppRecord | undefined> {
  return (await store.loadRecord<AppRecord>(APP, id))?.value;
}

/** Forget an app and its instances: no new opens (sessions already open live until they end). */
export async function removeApp(store: Store, id: string): Promise<boolean> {
  for (const instance of await listInstances(store, id)) await store.removeRecord(APP_INSTANCE, instanceRecordId(id, instance.instance));
  return store.removeRecord(APP, id);
}

export async function listInstances(store: Store, app: string): Promise<Array<{ instance: string; record: InstanceRecord }>> {
  const prefix = `${app}/`;
  return (await store.listRecords<InstanceRecord>(APP_INSTANCE))
    .filter((entry) => entry.id.startsWith(prefix))
    .map((entry) => ({ instance: entry.id.slice(prefix.length), record: entry.value }));
}

/** The operator lists an instance (as a `listed` app needs); listing one already registered keeps its first open. */
export async function addInstance(store: Store, app: string, instance: string, now: number): Promise<void> {
  if (!INSTANCE_ID.test(instance)) throw new RotorError('ROTOR_E_BAD_REQUEST', 'an instance id is 1–128 of A-Z a-z 0-9 . _ : -');
  if (!(await loadApp(store, app))) throw new RotorError('ROTOR_E_APP_UNKNOWN');
  await changeRecord<InstanceRecord>(store, APP_INSTANCE, instanceRecordId(app, instance), (found) => ({ ...(found ?? { addedAt: now }), listed: true }));
}

export function removeInstance(store: Store, app: string, instance: string): Promise<boolean> {
  return store.removeRecord(APP_INSTANCE, instanceRecordId(app, instance));
}

/** Whether `instance` of `app` may open (spec §12): a listed app's must be listed; an open app's may. Reads only. */
export async function instanceAllowed(store: Store, app: AppRecord, appId: string, instance: string): Promise<{ allowed: boolean; found: CatalogEntry<InstanceRecord> | undefined }> {
  const found = await store.loadRecord<InstanceRecord>(APP_INSTANCE, instanceRecordId(appId, instance));
  return { allowed: found !== undefined || app.instances === 'open', found };
}

/** Note an instance's first open — registering it, for an open app — unless it has one. */
export async function noteFirstOpen(store: Store, appId: string, instance: string, found: CatalogEntry<InstanceRecord> | undefined, now: number, address: string | undefined): Promise<void> {
  if (found !== undefined && found.value.firstOpenAt !== undefined) return;
  const id = instanceRecordId(appId, instance);
  const first = { firstOpenAt: now, firstAddress: address };
  // A race with another first open (or the operator) only decides whose first open is noted.
  if (found === undefined) await store.createRecords<InstanceRecord>(APP_INSTANCE, [{ id, value: { listed: false, addedAt: now, ...first } }]);
  else await store.commitRecord<InstanceRecord>(APP_INSTANCE, id, { ...found.value, ...first }, found.rev);
}
