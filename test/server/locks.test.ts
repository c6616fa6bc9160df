/** KeyedSerializer: one key's work runs one at a time in arrival order; other keys are not held up; a failure does not stop the line. */
import t from 'tap';
import { KeyedSerializer } from '../../src/server/locks.ts';

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

t.test('one key: in arrival order, never two at once; a failing run passes its failure on and lets the next start', async (t) => {
  const locks = new KeyedSerializer();
  const events: string[] = [];
  let running = 0;
  let most = 0;
  const first = gate();
  const job = (name: string, wait?: Promise<void>, fail = false) => async () => {
    running++;
    most = Math.max(most, running);
    events.push(`start ${name}`);
    await wait;
    events.push(`end ${name}`);
    running--;
    if (fail) throw new Error(name);
    return name;
  };
  const results = [locks.run('a', job('1', first.promise)), locks.run('a', job('2', undefined, true)), locks.run('a', job('3'))];
  t.same(events, ['start 1'], 'only the first started');
  first.open();
  const settled = await Promise.allSettled(results);
  t.same(events, ['start 1', 'end 1', 'start 2', 'end 2', 'start 3', 'end 3']);
  t.equal(most, 1, 'never two at once');
  t.same(settled.map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled']);
  t.equal((settled[2] as PromiseFulfilledResult<string>).value, '3', 'each caller gets its own result');
  t.equal(locks.size, 0, 'nothing kept once the line is empty');
});

t.test('different keys run at once; work that throws before its promise is a rejection', async (t) => {
  const locks = new KeyedSerializer();
  const blocked = gate();
  let bStarted = false;
  const a = locks.run('a', () => blocked.promise);
  const b = locks.run('b', async () => {
    bStarted = true;
  });
  await b;
  t.ok(bStarted, 'b ran while a was blocked');
  t.equal(locks.size, 1, 'a is still running');
  await t.rejects(
    locks.run('c', () => {
      throw new Error('sync');
    }),
    /sync/,
  );
  blocked.open();
  await a;
  t.equal(locks.size, 0);
});
