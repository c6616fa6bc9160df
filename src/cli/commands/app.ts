/**
 * `rotor app add | list | show | remove` and `rotor app instance add | remove`: the applications
 * whose instances open sealed sessions (spec §12), in the embedded store or Redis. An app's key
 * is printed once, by `add`, and kept nowhere: the store has its public half only.
 */
import type { Argv } from 'yargs';
import { addApp, addInstance, APP_ID, INSTANCE_ID, listApps, listInstances, loadApp, removeApp, removeInstance } from '../../seal/apps.ts';
import type { AppRecord, InstancePolicy, InstanceRecord } from '../../seal/types.ts';
import { pooledRandom } from '../../session/random.ts';
import type { Store } from '../../store/types.ts';
import { storeOptions, withStore, type StoreArgs } from '../options.ts';

const POLICIES: readonly InstancePolicy[] = ['open', 'listed'];
const iso = (ms: number) => new Date(ms).toISOString();
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const JSON_OPTION = { type: 'boolean', default: false, describe: 'as JSON, for programs' } as const;

/** The app `id`, or a one-line refusal: ids are checked before the store is asked. */
async function requireApp(store: Store, id: string): Promise<AppRecord> {
  const app = APP_ID.test(id) ? await loadApp(store, id) : undefined;
  if (!app) throw new Error(`no app ${id} (rotor app list shows them)`);
  return app;
}

function requireInstanceId(instance: string): void {
  if (!INSTANCE_ID.test(instance)) throw new Error(`bad instance id ${JSON.stringify(instance)}: an instance id is 1–128 of A-Z a-z 0-9 . _ : -`);
}

const describeApp = (id: string, app: AppRecord, instances: number) => `${id}: ${app.name}, instances ${app.instances}, ${plural(instances, 'instance')}`;

function describeInstance(instance: string, record: InstanceRecord): string {
  const how = record.listed ? `listed ${iso(record.addedAt)}` : 'registered at its first open';
  const first = record.firstOpenAt === undefined ? 'not opened yet' : `first open ${iso(record.firstOpenAt)} from ${record.firstAddress ?? 'an unknown address'}`;
  return `${instance}: ${how}, ${first}`;
}

const instanceView = (instance: string, record: InstanceRecord) => ({
  id: instance,
  listed: record.listed,
  addedAt: record.addedAt,
  firstOpenAt: record.firstOpenAt ?? null,
  firstAddress: record.firstAddress ?? null,
});

/** `rotor app instance add | remove`: the ids checked, the app required, then `work`'s line printed. */
function instanceCommands(y: Argv): Argv {
  const positionals = <T>(yy: Argv<T>) =>
    yy.positional('id', { type: 'string', demandOption: true, describe: 'the app id' }).positional('instance', { type: 'string', demandOption: true, describe: 'the instance id: its host name or address' });
  const onInstance = (work: (store: Store, id: string, instance: string, app: AppRecord) => Promise<string>) => async (args: { id: string; instance: string }) => {
    requireInstanceId(args.instance);
    // The store options are the parent command's (storeOptions on `app`).
    await withStore(args as unknown as StoreArgs, async (store) => console.log(await work(store, args.id, args.instance, await requireApp(store, args.id))));
  };
  return y
    .command(
      'add <id> <instance>',
      "list an instance: a listed app's instance may open only once added (an instance already registered keeps its first open)",
      positionals,
      onInstance(async (store, id, instance) => {
        await addInstance(store, id, instance, Date.now());
        return `instance ${instance} of app ${id} listed`;
      }),
    )
    .command(
      'remove <id> <instance>',
      "remove an instance: a listed app's is refused from its next open on, and its open sessions end at their next request",
      positionals,
      onInstance(async (store, id, instance, app) => {
        if (!(await removeInstance(store, id, instance))) throw new Error(`app ${id} has no instance ${instance}`);
        return `instance ${instance} of app ${id} removed${app.instances === 'open' ? ' (an open app registers it again at its next open)' : ''}`;
      }),
    )
    .demandCommand(1);
}

export function appCommand(y: Argv): Argv {
  return y.command('app', 'manage applications whose instances open sealed sessions (add | list | show | remove | instance add | instance remove)', (y) =>
    storeOptions(y)
      .command(
        'add <name>',
        "register an app: prints its id and its key, the key only now (the store keeps the key's public half)",
        (yy) =>
          yy
            .positional('name', { type: 'string', demandOption: true, describe: '1–64 of A-Z a-z 0-9 . _ -' })
            .option('instances', { choices: POLICIES, default: 'open' as InstancePolicy, describe: 'open: any instance the key signs for, registered at its first open; listed: only those added with rotor app instance add' })
            .option('json', JSON_OPTION),
        async (args) => {
          await withStore(args, async (store) => {
            const { id, key, record } = await addApp(store, args.name, args.instances, Date.now(), pooledRandom());
            const notice = 'the app key is shown only now and kept nowhere: give it to the app, keep it as secret as a password (lost: remove the app and add it again)';
            if (args.json) {
              console.log(JSON.stringify({ id, name: record.name, key, instances: record.instances }));
              console.error(`rotor: ${notice}`);
            } else {
              console.log(`app ${record.name} added (instances ${record.instances})`);
              console.log(`app id: ${id}`);
              console.log(`app key: ${key}`);
              console.log(`Note: ${notice}.`);
            }
          });
        },
      )
      .command(
        'list',
        'list apps: id, name, instance policy, how many instances',
        (yy) => yy.option('json', JSON_OPTION),
        async (args) => {
          await withStore(args, async (store) => {
            const apps = await Promise.all((await listApps(store)).map(async ({ id, value }) => ({ id, app: value, instances: (await listInstances(store, id)).length })));
            if (args.json) console.log(JSON.stringify(apps.map(({ id, app, instances }) => ({ id, name: app.name, instances: app.instances, count: instances })), null, 2));
            else for (const { id, app, instances } of apps) console.log(describeApp(id, app, instances));
          });
        },
      )
      .command(
        'show <id>',
        'an app and its instances: listed or registered at its first open, when and from which address it first opened',
        (yy) => yy.positional('id', { type: 'string', demandOption: true }).option('json', JSON_OPTION),
        async (args) => {
          await withStore(args, async (store) => {
            const app = await requireApp(store, args.id);
            const instances = await listInstances(store, args.id);
            if (args.json) {
              console.log(JSON.stringify({ app: { id: args.id, ...app }, instances: instances.map(({ instance, record }) => instanceView(instance, record)) }, null, 2));
              return;
            }
            console.log(`${describeApp(args.id, app, instances.length)}, added ${iso(app.createdAt)}`);
            for (const { instance, record } of instances) console.log(`  ${describeInstance(instance, record)}`);
          });
        },
      )
      .command(
        'remove <id>',
        'remove an app and its instances: no new opens, and its open sessions end at their next request (within seal.registeredSeconds)',
        (yy) => yy.positional('id', { type: 'string', demandOption: true }),
        async (args) => {
          await withStore(args, async (store) => {
            const app = await requireApp(store, args.id);
            if (!(await removeApp(store, args.id))) throw new Error(`no app ${args.id} (rotor app list shows them)`);
            console.log(`app ${args.id} (${app.name}) removed: its open sessions end at their next request`);
          });
        },
      )
      .command('instance', 'list or remove instances of an app (add | remove)', instanceCommands)
      .demandCommand(1),
  );
}
