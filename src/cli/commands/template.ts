/** `rotor template add | list | show | remove`: quota templates of access codes (spec §10) in the embedded store or Redis. */
import type { Argv } from 'yargs';
import { parseDuration } from '../../config/duration.ts';
import { describeTemplate, parseBytes, templateRecord } from '../../quotas/templates.ts';
import type { LotRecord, TemplateRecord } from '../../quotas/types.ts';
import { storeOptions, withStore, type StoreArgs } from '../options.ts';

const bytes = (text: string | undefined) => (text === undefined ? undefined : parseBytes(text));
const duration = (text: string | undefined) => (text === undefined ? undefined : parseDuration(text));

export function templateCommand(y: Argv): Argv {
  return y.command('template', 'manage quota templates of access codes (add | list | show | remove)', (y) =>
    storeOptions(y)
      .command(
        'add <name>',
        'define a template, or change one (codes already issued follow the change from their next login)',
        (yy) =>
          yy
            .positional('name', { type: 'string', demandOption: true })
            .option('max-in', { type: 'string', describe: 'bytes the client may send (e.g. 500MB; kB MB GB TB are powers of 1000, KiB MiB GiB of 1024)' })
            .option('max-out', { type: 'string', describe: 'bytes the client may receive' })
            .option('max-total', { type: 'string', describe: 'bytes both ways together' })
            .option('connection', { type: 'string', describe: 'how long one connection may last (e.g. 4h)' })
            .option('usage', { type: 'string', describe: 'time in use over all the code\'s connections (e.g. 8h)' })
            .option('wall', { type: 'string', describe: 'how long the code lasts from its first use (e.g. 24h)' })
            .option('age', { type: 'string', describe: 'how long the code lasts from its issue, used or not (e.g. 30d)' })
            .option('single-use', { type: 'boolean', default: false, describe: 'its one connection spends the code (default: reusable while caps remain)' })
            .option('nodes', { type: 'string', describe: 'the rotor nodes (quotas.node) where its codes are valid, comma-separated (default: every node)' }),
        async (args) => {
          const template = templateRecord(
            args.name,
            {
              maxBytesIn: bytes(args['max-in']),
              maxBytesOut: bytes(args['max-out']),
              maxBytesTotal: bytes(args['max-total']),
              connectionMs: duration(args.connection),
              usageMs: duration(args.usage),
              wallMs: duration(args.wall),
              ageMs: duration(args.age),
              reusable: !args['single-use'],
              nodes: args.nodes?.split(',').map((node) => node.trim()).filter((node) => node !== ''),
            },
            Date.now(),
          );
          await withStore(args, async (store) => {
            const existing = await store.loadRecord<TemplateRecord>('template', template.name);
            const saved = existing ? { ...template, createdAt: existing.value.createdAt } : template;
            if (!(await store.commitRecord('template', template.name, saved, existing?.rev ?? 0))) throw new Error(`template ${template.name} changed meanwhile; try again`);
            console.log(`template saved: ${describeTemplate(saved)}`);
          });
        },
      )
      .command('list', 'list templates', {}, async (args) => {
        await withStore(args as unknown as StoreArgs, async (store) => {
          for (const { value } of await store.listRecords<TemplateRecord>('template')) console.log(describeTemplate(value));
        });
      })
      .command(
        'show <name>',
        'a template (JSON)',
        (yy) => yy.positional('name', { type: 'string', demandOption: true }),
        async (args) => {
          await withStore(args, async (store) => {
            const entry = await store.loadRecord<TemplateRecord>('template', args.name);
            if (!entry) throw new Error(`no template ${args.name}`);
            console.log(JSON.stringify(entry.value, null, 2));
          });
        },
      )
      .command(
        'remove <name>',
        'remove a template; refused while a lot that is not revoked uses it (revoke the lot first: a code whose template is gone cannot log in)',
        (yy) => yy.positional('name', { type: 'string', demandOption: true }),
        async (args) => {
          await withStore(args, async (store) => {
            if (!(await store.loadRecord('template', args.name))) throw new Error(`no template ${args.name}`);
            const users = (await store.listRecords<LotRecord>('lot')).filter(({ value }) => value.template === args.name && value.revokedAt === null);
            if (users.length > 0) throw new Error(`template ${args.name} is used by lot${users.length > 1 ? 's' : ''} ${users.map(({ id }) => id).join(', ')}: revoke ${users.length > 1 ? 'them' : 'it'} first`);
            if (!(await store.removeRecord('template', args.name))) throw new Error(`no template ${args.name}`);
            console.log(`template ${args.name} removed`);
          });
        },
      )
      .demandCommand(1),
  );
}
