import type { Header } from '../../wire/index.ts';
import type { ExchangeOperation } from '../exchange.ts';
import { errorOutcome, type DispatchContext, type Outcome } from '../context.ts';

/** `GET /rotor/tasks/<id>`: the state of one of this session's deferred tasks, its result once done. */
export function taskStatus(ctx: DispatchContext, taskId: string): ExchangeOperation {
  return {
    async perform(admitted, released) {
      const base = { tasks: [], meta: admitted.meta };
      const rotateWith = (outcome: Omit<Outcome, 'tasks' | 'meta'>) => ({ kind: 'rotate' as const, outcome: { ...base, ...outcome } });
      // A task the ack of this very exchange released is not in the store yet.
      const task = released.find((t) => t.id === taskId) ?? (await ctx.store.loadTask(taskId));
      if (!task || task.sessionId !== admitted.id) return rotateWith(errorOutcome('ROTOR_E_TASK_UNKNOWN'));
      if (task.status === 'done') {
        const headers: Header[] = task.contentType ? [['Content-Type', task.contentType]] : [];
        return rotateWith({ status: 200, headers, body: task.result ?? Buffer.alloc(0) });
      }
      if (task.status === 'failed' || task.status === 'timed_out') {
        const code = task.status === 'failed' ? 'ROTOR_E_TASK_FAILED' : 'ROTOR_E_TASK_TIMED_OUT';
        return rotateWith({ ...errorOutcome(code), headers: [['Content-Type', 'text/plain; charset=utf-8']], body: Buffer.from(task.error ?? '') });
      }
      return rotateWith({ status: 202, headers: [['Task', task.id], ['Wait-for', String(ctx.config.session.defaultWaitForSeconds)]] });
    },
  };
}
