/**
 * A client written from spec.md alone (python3, standard library, no rotor code) runs one
 * session against a real server: login, read, a lost reply replayed on a new connection,
 * deferred work, ack, its result, and token reuse.
 */
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { runPython, startServer, type PythonRun } from './helpers.ts';

const SCRIPT = fileURLToPath(new URL('./raw_client.py', import.meta.url));

const runClient = (args: string[]): Promise<PythonRun> => runPython(SCRIPT, args, 15_000);

t.test('a spec-only python client runs a whole session', async (t) => {
  const srv = await startServer({ tasks: { pollIntervalMs: 50 } });
  t.teardown(() => srv.close());
  const run = await runClient(['--port', String(srv.port)]);
  t.equal(run.stderr, '', 'nothing on stderr');
  t.match(run.facts, {
    ok: true,
    step: 'done',
    hello: 'hello, alice',
    replay_identical: true,
    work_replay_identical: true,
    // "rotor \0\r\n bytes" reversed
    result_hex: Buffer.from('rotor \x00\r\n bytes').reverse().toString('hex'),
    reuse: 'ROTOR_E_TOKEN_REUSED',
    revoked: 'ROTOR_E_SESSION_REVOKED',
  });
  t.equal(run.code, 0, `exit code (${JSON.stringify(run.facts)})`);
  // login, hello, lost hello, reverse, then at least one poll of the task.
  t.ok(Number(run.facts.tokens) >= 5, 'every rotation gave a token never seen before');

  // The server agrees: the deferred work ran exactly once, with the body the client sent.
  const task = await srv.store.loadTask(String(run.facts.task));
  t.equal(task?.status, 'done');
  t.equal(task?.result?.toString('latin1'), Buffer.from('rotor \x00\r\n bytes').reverse().toString('latin1'));
});

t.test('the python client reports a mismatch with a non-zero exit', async (t) => {
  const srv = await startServer();
  t.teardown(() => srv.close());
  const run = await runClient(['--port', String(srv.port), '--password', 'wrong']);
  t.equal(run.code, 1);
  t.match(run.facts, { ok: false, step: 'login', error: /want status 200, got 401 ROTOR_E_AUTH_FAILED/ });
});

t.test('the spec-only python client takes a seat, waits in line, and is granted (spec §9)', async (t) => {
  const srv = await startServer();
  t.teardown(() => srv.close());
  await srv.store.putPool({ name: 'cad', seats: 1, perUser: 0, heartbeatMs: 60_000, maxHoldMs: null, queueLimit: 10, perUserQueueLimit: 10, createdAt: 0 });
  const run = await runClient(['--port', String(srv.port), '--seats', 'cad']);
  t.equal(run.stderr, '', 'nothing on stderr');
  t.match(run.facts, { ok: true, step: 'done', first: 'granted', second: 'queued 1', then: 'granted' });
  t.same(run.facts.standing, { pool: 'cad', seats: 1, held: 1, queued: 1, seat: 'queued', position: 1 });
  t.equal(run.code, 0, `exit code (${JSON.stringify(run.facts)})`);
});
