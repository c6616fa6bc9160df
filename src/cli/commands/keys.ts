/**
 * `rotor keys list | add | promote | retire`: the MAC key ring in the embedded store or Redis
 * (spec §11 "Server keys"). Every change is one compare-and-set of the ring's record; running
 * nodes pick it up at their next reload. With --hand-over, the same commands manage this
 * server's Ed25519 hand-over keys file instead (spec §11 "Hand-over"). Nothing here prints a
 * secret, wrapped or not, nor a private key.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { loadConfig, type RotorConfig } from '../../config/index.ts';
import { addHandOverKey, promoteHandOverKey, readHandOverKeys, retireHandOverKey, spkiBase64, type HandOverKeys } from '../../handover/keys.ts';
import { loadOrCreateKeyFile } from '../../keys/file.ts';
import { changeRing, storeHome, type RingHome } from '../../keys/home.ts';
import { addKey, newKeyId, promote, retire, ringPolicy, signingKey, type Ring, type RingKey, type RingPolicy } from '../../keys/ring.ts';
import { checkUnwraps, firstRing } from '../../keys/source.ts';
import { wrapSecret } from '../../keys/wrap.ts';
import { pooledRandom } from '../../session/random.ts';
import { keyFilePath, storeOptions, withStore, type StoreArgs } from '../options.ts';

type KeysArgs = StoreArgs & { 'key-file'?: string | undefined; config?: string | undefined; 'hand-over'?: boolean | undefined; 'hand-over-keys'?: string | undefined };

/** The hand-over keys file, as `rotor serve --peers` finds it. */
const handOverFile = (args: KeysArgs): string => args['hand-over-keys'] ?? join(args.data, 'handover-keys.json');

/** Ids, which one signs, public keys: never a private key. */
function describeHandOver(keys: HandOverKeys, json: boolean): string {
  if (json) return JSON.stringify(keys.all.map((key) => ({ id: key.id, signing: key === keys.signing, publicKey: spkiBase64(key.publicKey) })), null, 2);
  return keys.all.map((key) => `${key.id.padEnd(16)} ${key === keys.signing ? 'signing' : 'listed '} ${spkiBase64(key.publicKey)}`).join('\n');
}

const iso = (ms: number) => new Date(ms).toISOString();

/** `42 s`, `12 min`, `5 h`, `3 d`: the largest unit that fits, rounded down. */
function span(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 2 * 3600) return `${Math.floor(s / 60)} min`;
  if (s < 2 * 86_400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86_400)} d`;
}

/** One key as `rotor keys list` shows it. */
function describeKey(key: RingKey<unknown>, now: number): string {
  const parts = [`added ${span(now - key.createdAt)} ago`];
  if (key.state === 'signing') parts.push(`signing for ${span(now - key.since)}`);
  if (key.state === 'next') parts.push(`next for ${span(now - key.since)}`);
  if (key.state === 'retiring') {
    parts.push(`stopped signing ${span(now - key.since)} ago`);
    if (key.retireAt === null) parts.push('kept until dropped by hand (never-expiring tokens allowed)');
    else if (key.retireAt > now) parts.push(`retireAt ${iso(key.retireAt)} (in ${span(key.retireAt - now)})`);
    else parts.push(`retireAt ${iso(key.retireAt)}, past: dropped at the next reload`);
  }
  return `${key.id.padEnd(16)} ${key.state.padEnd(8)} ${parts.join(', ')}`;
}

/** The settings the ring's rules read (token lifetime, skew, reload): the servers' --config and ROTOR_* variables. */
function settings(args: KeysArgs): RotorConfig {
  return loadConfig({ file: args.config, env: process.env });
}

async function withRing(args: KeysArgs, work: (home: RingHome) => Promise<void>): Promise<void> {
  if (args.store === 'memory') throw new Error("a memory store's key ring lives only inside its server; use the default embedded store or redis");
  await withStore(args, (store) => work(storeHome(store)));
}

/** Apply `change` to the stored ring (there must be one) by compare-and-set; the ring before and after. */
async function changeStored(home: RingHome, change: (ring: Ring<string>, at: number) => Ring<string>): Promise<{ before: Ring<string>; after: Ring<string> }> {
  let before: Ring<string> | undefined;
  const { ring } = await changeRing(home, (found) => {
    if (!found) throw new Error(`no key ring in ${home.where} yet: \`rotor keys add\` or the first \`rotor serve\` writes one`);
    before = found;
    return change(found, Date.now());
  });
  return { before: before!, after: ring };
}

/**
 * `promote <id> [--now]` and `retire <id> [--now]` on `y`: one event on the stored ring, by
 * compare-and-set; `say` is what it came to.
 */
function byId<T>(
  y: Argv<T>,
  name: string,
  describe: string,
  nowHelp: string,
  event: (ring: Ring<string>, id: string, at: number, policy: RingPolicy, now: boolean) => Ring<string>,
  say: (id: string, before: Ring<string>, after: Ring<string>) => string,
): Argv<T> {
  return y.command(
    `${name} <id>`,
    describe,
    (yy) => yy.positional('id', { type: 'string', demandOption: true }).option('now', { type: 'boolean', default: false, describe: nowHelp }),
    async (args) => {
      if ((args as unknown as KeysArgs)['hand-over']) {
        if (args.now) throw new Error('--now does not go with --hand-over: a hand-over key file is changed at once');
        const file = handOverFile(args as unknown as KeysArgs);
        if (name === 'promote') {
          const keys = promoteHandOverKey(file, args.id);
          console.log(`hand-over key ${args.id} signs in ${file} once the server reloads the file (${keys.all[1]!.id} stops signing and still verifies): promote a key only after peers have pulled a revocation list that lists it (peers.pullSeconds)`);
          return;
        }
        const keys = retireHandOverKey(file, args.id);
        console.log(`retired hand-over key ${args.id} from ${file} (${keys.signing.id} signs): peers refuse its tokens once the server reloads the file and they pull its revocation list`);
        return;
      }
      const policy = ringPolicy(settings(args as unknown as KeysArgs));
      await withRing(args as unknown as KeysArgs, async (home) => {
        const { before, after } = await changeStored(home, (ring, at) => event(ring, args.id, at, policy, args.now));
        console.log(say(args.id, before, after));
      });
    },
  );
}

export function keysCommand(y: Argv): Argv {
  return y.command('keys', 'manage the MAC keys that sign tokens (list | add | promote | retire), or with --hand-over the hand-over keys (list | add | promote | retire); never shows a secret', (y) => {
    const listAndAdd = storeOptions(y)
      .option('key-file', { type: 'string', describe: "the key file whose wrapping key wraps the ring's secrets (add); default <data>/keys.json" })
      .option('config', { type: 'string', describe: "the servers' JSON settings file: the token lifetime and keys.* settings decide retireAt and when a key may sign" })
      .option('hand-over', { type: 'boolean', default: false, describe: "list | add | promote | retire this server's Ed25519 hand-over keys (spec §11) instead of the MAC keys" })
      .option('hand-over-keys', { type: 'string', describe: "with --hand-over: the hand-over keys file, as rotor serve's --hand-over-keys; default <data>/handover-keys.json" })
      .command(
        'list',
        'every key: id, state, age, retireAt',
        (yy) => yy.option('json', { type: 'boolean', default: false, describe: 'as JSON (ids, states, times in ms; no secrets)' }),
        async (args) => {
          if (args['hand-over']) {
            const file = handOverFile(args);
            if (!existsSync(file)) console.log(`no hand-over keys in ${file} yet: the first \`rotor serve --peers\` (or \`rotor keys add --hand-over\`) writes them`);
            else console.log(describeHandOver(readHandOverKeys(file), args.json));
            return;
          }
          await withRing(args, async (home) => {
            const held = await home.load();
            if (!held) {
              console.log(`no key ring in ${home.where} yet: the first \`rotor serve\` (or \`rotor keys add\`) writes one`);
              return;
            }
            const now = Date.now();
            if (args.json) console.log(JSON.stringify(held.ring.keys.map(({ secret: _secret, ...key }) => key), null, 2));
            else for (const key of held.ring.keys) console.log(describeKey(key, now));
          });
        },
      )
      .command(
        'add',
        'add a fresh next key (the ring itself when the store has none): it signs once promoted',
        (yy) => yy,
        async (args) => {
          if (args['hand-over']) {
            const file = handOverFile(args);
            const { added, keys } = addHandOverKey(file);
            const now = keys.all.length === 1 ? 'it signs once the server restarts or reloads the file' : `it is published in the revocation list once the server reloads the file, and signs once promoted (rotor keys promote --hand-over ${added.id}), after peers have pulled it`;
            console.log(`added hand-over key ${added.id} to ${file}: ${now}`);
            return;
          }
          const random = pooledRandom();
          // The key file before the store, as rotor serve reads it: one others can read stops here.
          const material = loadOrCreateKeyFile(keyFilePath(args), random);
          const policy = ringPolicy(settings(args));
          await withRing(args, async (home) => {
            let id = '';
            await changeRing(home, (found) => {
              const at = Date.now();
              // A key wrapped with a wrapping key no node has would stop every node that promotes it.
              if (found) checkUnwraps(found, material, home.where);
              const ring = found ?? firstRing(material, at, policy, random);
              id = newKeyId(ring, at);
              return addKey(ring, id, wrapSecret(material.wrap, id, random(32)), at);
            });
            console.log(`added ${id} (next): it may sign in ${span(policy.settleMs)} (rotor keys promote ${id}), once every node has read it`);
          });
        },
      );
    const promoteHelp = 'even if ID has been next for less than twice keys.reloadSeconds (one node only: another may not know it yet)';
    const promoting = byId(listAndAdd, 'promote', 'ID signs from now on; the signing key retires', promoteHelp, promote, (id, before, after) => {
      const old = after.keys.find((key) => key.id === signingKey(before).id)!;
      return `${id} signs; ${old.id} is retiring, ${old.retireAt === null ? 'kept until dropped by hand' : `retireAt ${iso(old.retireAt)}`}`;
    });
    const retireHelp = 'drop it at once: its tokens, even unexpired ones, are refused (ROTOR_E_TOKEN_INVALID)';
    return byId(promoting, 'retire', 'drop a next or retiring key: at its retireAt, or at once with --now', retireHelp, retire, (id, _before, after) => {
      const kept = after.keys.find((key) => key.id === id);
      return kept ? `${id} is dropped at ${iso(kept.retireAt!)}` : `${id} dropped: nodes refuse its tokens from their next reload`;
    }).demandCommand(1);
  });
}
