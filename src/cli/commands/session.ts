/** `rotor session show`: one stored session, as an operator looks into it (a metered one with its access code's state). */
import type { Argv } from 'yargs';
import { codeStatus } from '../../quotas/machine.ts';
import type { CodeRecord, TemplateRecord } from '../../quotas/types.ts';
import type { SessionState } from '../../session/types.ts';
import type { Store } from '../../store/types.ts';
import { storeOptions, withStore } from '../options.ts';

/** What `session show` prints: the session without its token hashes or the kept reply, and its code's state. */
export async function sessionView(store: Store, state: SessionState, now: number): Promise<Record<string, unknown>> {
  const { id, user, gen, acked, createdAt, expiresAt, revoked, meta, quota } = state;
  const view: Record<string, unknown> = { id, user, gen, acked, createdAt, expiresAt, revoked, meta, quota };
  if (quota !== null) {
    const code = (await store.loadRecord<CodeRecord>('code', quota.code))?.value;
    const template = (await store.loadRecord<TemplateRecord>('template', quota.template))?.value;
    view.code = code
      ? { id: code.id.slice(0, 12), lot: code.lot, owner: code.owner, status: codeStatus(code, template, now), used: code.used, connections: code.connections, live: code.session === id, lastEnd: code.lastEnd }
      : null;
  }
  return view;
}

export function sessionCommand(y: Argv): Argv {
  return y.command('session', 'look into stored sessions (show)', (y) =>
    storeOptions(y)
      .command(
        'show <id>',
        "a session (JSON, no token hashes): user, generation, expiry, whether and why it was revoked, metadata, and for a code's session its quota and the code's status and last end",
        (yy) => yy.positional('id', { type: 'string', demandOption: true }),
        async (args) => {
          await withStore(args, async (store) => {
            const state = await store.loadSession(args.id);
            if (!state) throw new Error(`no session ${args.id} (never, or forgotten after its expiry)`);
            console.log(JSON.stringify(await sessionView(store, state, Date.now()), null, 2));
          });
        },
      )
      .demandCommand(1),
  );
}
