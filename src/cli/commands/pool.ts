/** `rotor pool add | list | show | remove`: licence seat pools (spec §9) in the embedded store or Redis. */
import type { Argv } from 'yargs';
import { parseDuration } from '../../config/duration.ts';
import { describePool, poolRecord } from '../../seats/pools.ts';
import { storeOptions, withStore, type StoreArgs } from '../options.ts';

export function poolCommand(y: Argv): Argv {
  return y.command('pool', 'manage licence seat pools (add | list | show | remove)', (y) =>
    storeOptions(y)
      .command(
        'add <name>',
        'define a pool, or change one (who holds its seats is kept)',
        (yy) =>
          yy
            .positional('name', { type: 'string', demandOption: true })
            .option('seats', { type: 'number', demandOption: true, describe: 'how many seats the pool has' })
            .option('per-user', { type: 'number', describe: 'the most seats one user may hold at once (default: no cap)' })
            .option('heartbeat', { type: 'string', describe: 'a holder or waiter silent this long loses its seat or place (default 5m)' })
            .option('max-hold', { type: 'string', describe: 'the longest one session may hold a seat (default: no limit)' })
            .option('queue-limit', { type: 'number', describe: 'the most waiters (default 100)' })
            .option('per-user-queue-limit', { type: 'number', describe: 'the most waiters of one user (default 10)' }),
        async (args) => {
          const pool = poolRecord(
            args.name,
            {
              seats: args.seats,
              perUser: args['per-user'],
              heartbeatMs: args.heartbeat === undefined ? undefined : parseDuration(args.heartbeat),
              maxHoldMs: args['max-hold'] === undefined ? undefined : parseDuration(args['max-hold']),
              queueLimit: args['queue-limit'],
              perUserQueueLimit: args['per-user-queue-limit'],
            },
            Date.now(),
          );
          await withStore(args, async (store) => {
            const existing = await store.loadPool(pool.name);
            await store.putPool(existing ? { ...pool, createdAt: existing.createdAt } : pool);
            console.log(`pool saved: ${describePool(pool)}`);
          });
        },
      )
      .command('list', 'list pools with their seats held and waiting', {}, async (args) => {
        await withStore(args as unknown as StoreArgs, async (store) => {
          for (const pool of await store.listPools()) {
            const seats = await store.loadSeats(pool.name);
            console.log(describePool(pool, seats?.holders.length ?? 0, seats?.queue.length ?? 0));
          }
        });
      })
      .command(
        'show <name>',
        'a pool, its holders and its line (JSON)',
        (yy) => yy.positional('name', { type: 'string', demandOption: true }),
        async (args) => {
          await withStore(args, async (store) => {
            const pool = await store.loadPool(args.name);
            if (!pool) throw new Error(`no pool ${args.name}`);
            const seats = await store.loadSeats(pool.name);
            console.log(JSON.stringify({ pool, holders: seats?.holders ?? [], queue: seats?.queue ?? [] }, null, 2));
          });
        },
      )
      .command(
        'remove <name>',
        'remove a pool and forget who holds its seats',
        (yy) => yy.positional('name', { type: 'string', demandOption: true }),
        async (args) => {
          await withStore(args, async (store) => {
            if (!(await store.removePool(args.name))) throw new Error(`no pool ${args.name}`);
            console.log(`pool ${args.name} removed`);
          });
        },
      )
      .demandCommand(1),
  );
}
