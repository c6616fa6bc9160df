/** `rotor lot issue | list | show | revoke`: lots of access codes (spec §10) in the embedded store or Redis. */
import { closeSync, openSync, unlinkSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { Argv } from 'yargs';
import { DEFAULTS } from '../../config/defaults.ts';
import { addOwnedCodes } from '../../quotas/login.ts';
import { countByStatus, loadLot, lotCodes, revokeLot } from '../../quotas/lots.ts';
import { codeStatus } from '../../quotas/machine.ts';
import { issueLot, lotCsv } from '../../quotas/templates.ts';
import type { LotRecord, TemplateRecord } from '../../quotas/types.ts';
import { pooledRandom } from '../../session/random.ts';
import { storeOptions, withStore, type StoreArgs } from '../options.ts';

const iso = (ms: number) => new Date(ms).toISOString();

/** The operator's name, when the OS knows it. */
function osUser(): string {
  try {
    return userInfo().username || 'unknown';
  } catch {
    return 'unknown';
  }
}

/** A lot id of its template, the day and a random suffix: `day-pass-20261124-3f9a`. */
function defaultLotId(template: string, now: number): string {
  return `${template.slice(0, 50)}-${iso(now).slice(0, 10).replace(/-/g, '')}-${pooledRandom()(2).toString('hex')}`;
}

function describeLot(lot: LotRecord): string {
  const parts = [`template ${lot.template}`, `${lot.codes.length} code${lot.codes.length === 1 ? '' : 's'}`, `issued ${iso(lot.issuedAt)} by ${lot.issuer}`];
  if (lot.comment !== '') parts.push(JSON.stringify(lot.comment));
  if (lot.revokedAt !== null) parts.push(`REVOKED ${iso(lot.revokedAt)}`);
  return `${lot.id}: ${parts.join(', ')}`;
}

export function lotCommand(y: Argv): Argv {
  return y.command('lot', 'manage lots of access codes (issue | list | show | revoke)', (y) =>
    storeOptions(y)
      .command(
        'issue',
        'make a lot of codes from a template and print them once, as CSV (the store keeps only their hashes)',
        (yy) =>
          yy
            .option('template', { type: 'string', demandOption: true, describe: 'the template the codes follow' })
            .option('count', { type: 'number', demandOption: true, describe: 'how many codes (1–100000)' })
            .option('comment', { type: 'string', default: '', describe: 'printed with each code in the CSV, and shown by lot list' })
            .option('id', { type: 'string', describe: "the lot's id (default: the template's name, the date and a random suffix)" })
            .option('owner', { type: 'string', describe: 'issue the codes to this user: only they, with their password, may use them' })
            .option('issuer', { type: 'string', describe: 'who issues it (default: your OS user name)' })
            .option('csv', { type: 'string', describe: 'write the CSV to this new file (mode 0600; an existing file is never replaced) instead of stdout' }),
        async (args) => {
          await withStore(args, async (store) => {
            const template = (await store.loadRecord<TemplateRecord>('template', args.template))?.value;
            if (!template) throw new Error(`no template ${args.template} (rotor template list shows them)`);
            const owner = args.owner ?? '';
            if (owner !== '' && !(await store.loadUser(owner))) throw new Error(`no user ${owner}`);
            const now = Date.now();
            // The file first: once the lot is stored, its codes must have somewhere to go.
            const fd = args.csv === undefined ? undefined : createFile(args.csv);
            let written = false;
            try {
              const issued = await issueLot(store, pooledRandom(), { id: args.id ?? defaultLotId(template.name, now), template, count: args.count, comment: args.comment, issuer: args.issuer ?? osUser(), owner, now });
              const csv = lotCsv(issued);
              if (fd === undefined) process.stdout.write(csv);
              else writeFileSync(fd, csv);
              written = true;
              if (owner !== '' && !(await addOwnedCodes({ store }, owner, issued.lot.codes))) throw new Error(`lot ${issued.lot.id} issued, but user ${owner}'s list of codes kept changing: they are not listed as theirs`);
              const summary = `lot ${issued.lot.id} issued: ${issued.codes.length} codes of template ${template.name}${owner ? ` for ${owner}` : ''}`;
              // On stdout only when the CSV is not there.
              if (fd === undefined) console.error(summary);
              else console.log(`${summary}, written to ${args.csv}`);
            } finally {
              if (fd !== undefined) {
                closeSync(fd);
                if (!written) unlinkSync(args.csv!);
              }
            }
          });
        },
      )
      .command('list', 'list lots, one line each', {}, async (args) => {
        await withStore(args as unknown as StoreArgs, async (store) => {
          for (const { value } of await store.listRecords<LotRecord>('lot')) console.log(describeLot(value));
        });
      })
      .command(
        'show <id>',
        'a lot and how many of its codes are unused, active, exhausted, expired, revoked (JSON)',
        (yy) => yy.positional('id', { type: 'string', demandOption: true }).option('codes', { type: 'boolean', default: false, describe: "also each code: its id's first 12 characters, status, what its ended connections used, how its last one ended, its live session" }),
        async (args) => {
          await withStore(args, async (store) => {
            const { lot } = await loadLot(store, args.id);
            const template = (await store.loadRecord<TemplateRecord>('template', lot.template))?.value;
            const codes = await lotCodes(store, lot);
            const now = Date.now();
            const { codes: _ids, ...shown } = lot;
            const out: Record<string, unknown> = { lot: { ...shown, count: lot.codes.length }, status: countByStatus(codes, template, now) };
            if (!template) out.template = null;
            if (args.codes) {
              out.codes = codes.map((code) => ({ id: code.id.slice(0, 12), status: codeStatus(code, template, now), used: code.used, lastEnd: code.lastEnd, session: code.session }));
            }
            console.log(JSON.stringify(out, null, 2));
          });
        },
      )
      .command(
        'revoke <id>',
        "revoke a lot: none of its codes logs in again, and each code's live session is ended at its next exchange",
        (yy) => yy.positional('id', { type: 'string', demandOption: true }),
        async (args) => {
          await withStore(args, async (store) => {
            const done = await revokeLot(store, args.id, Date.now(), DEFAULTS.session.revokedRetentionMinutes * 60_000);
            console.log(`lot ${args.id} revoked: ${done.codes} code${done.codes === 1 ? '' : 's'} and ${done.sessions} live session${done.sessions === 1 ? '' : 's'} revoked`);
          });
        },
      )
      .demandCommand(1),
  );
}

function createFile(path: string): number {
  try {
    return openSync(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${path} exists: the codes go to a new file only`);
    throw err;
  }
}
