import t from 'tap';
import { getHeader } from '../../src/wire/index.ts';
import { RotorError } from '../../src/errors.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { harness } from './harness.ts';

const runs: string[] = [];
const app: RotorApp = {
  routes: {
    'GET /ok': () => ({ body: 'fine' }),
    'GET /throws': () => {
      throw new Error('handler bug');
    },
    'GET /refuses': () => {
      throw new RotorError('ROTOR_E_BAD_REQUEST', 'no');
    },
    'GET /defers': () => ({ defer: { task: 'job' } }),
    'POST /defers': (req) => ({ defer: { task: 'job', payload: req.body?.toString() ?? null, waitForSeconds: 7 } }),
    'POST /unknown-task': () => ({ defer: { task: 'nope' } }),
    'POST /fails': () => ({ defer: { task: 'broken' } }),
    'GET /reserved-header': () => ({ headers: { Token: 'forged' } }),
    'GET /custom': (req) => ({ status: 418, headers: { 'X-Custom': req.query }, body: 'teapot' }),
    'GET /files/*': (req) => ({ body: req.path }),
    'POST /meta': () => ({ meta: { big: 'x'.repeat(20_000) } }),
  },
  tasks: {
    job: async (payload) => {
      runs.push(String(payload));
      return `did ${payload}`;
    },
    broken: async () => {
      throw new Error('task exploded');
    },
  },
};

t.test('application outcomes after admission rotate the token', async (t) => {
  const h = await harness(app);
  let token = await h.login();
  const expectations: Array<[string, string, number, string | undefined]> = [
    ['GET', '/ok', 200, undefined],
    ['GET', '/throws', 500, 'ROTOR_E_HANDLER_FAILED'],
    ['GET', '/refuses', 400, 'ROTOR_E_BAD_REQUEST'],
    ['GET', '/defers', 500, 'ROTOR_E_HANDLER_FAILED'],
    ['POST', '/unknown-task', 500, 'ROTOR_E_HANDLER_FAILED'],
    ['GET', '/reserved-header', 500, 'ROTOR_E_HANDLER_FAILED'],
    ['GET', '/missing', 404, 'ROTOR_E_NOT_FOUND'],
    ['DELETE', '/ok', 405, 'ROTOR_E_METHOD_NOT_ALLOWED'],
    ['POST', '/meta', 500, 'ROTOR_E_HANDLER_FAILED'],
  ];
  for (const [verb, path, status, code] of expectations) {
    const { frame, close } = await h.send(verb, path, [['Token', token]]);
    t.equal(frame.status, status, `${verb} ${path} status`);
    t.equal(getHeader(frame, 'Error'), code, `${verb} ${path} code`);
    t.equal(close, false, `${verb} ${path} keeps the connection`);
    const next = getHeader(frame, 'Token');
    t.ok(next && next !== token, `${verb} ${path} rotated`);
    token = next!;
  }
  const wrongVerb = await h.send('PATCH', '/ok', [['Token', token]]);
  t.equal(getHeader(wrongVerb.frame, 'Allow'), 'GET', 'an application 405 says which verbs the path takes');
  token = getHeader(wrongVerb.frame, 'Token')!;
  const custom = await h.send('GET', '/custom?x=1', [['Token', token]]);
  t.equal(custom.frame.status, 418);
  t.equal(getHeader(custom.frame, 'X-Custom'), 'x=1', 'the query string reaches the handler');
  token = getHeader(custom.frame, 'Token')!;
  const prefix = await h.send('GET', '/files/a/b', [['Token', token]]);
  t.equal(prefix.frame.body?.toString(), '/files/a/b', 'prefix routes match below their path');
});

t.test("rotor's own paths with a wrong verb are 405 with Allow, before any token is looked at", async (t) => {
  const h = await harness(app);
  const cases: Array<[string, string, string]> = [
    ['POST', '/rotor/ping', 'GET'],
    ['GET', '/rotor/login', 'POST'],
    ['GET', '/rotor/token', 'POST, PUT, DELETE'],
    ['GET', '/rotor/resume', 'POST'],
    ['DELETE', '/rotor/ack', 'POST'],
    ['GET', '/rotor/logout', 'POST'],
    ['POST', '/rotor/tasks/abc', 'GET'],
  ];
  for (const [verb, path, allow] of cases) {
    const { frame, close } = await h.send(verb, path);
    t.equal(frame.status, 405, `${verb} ${path}`);
    t.equal(getHeader(frame, 'Error'), 'ROTOR_E_METHOD_NOT_ALLOWED', `${verb} ${path} code`);
    t.equal(getHeader(frame, 'Allow'), allow, `${verb} ${path} Allow`);
    t.equal(close, false, 'the connection lives');
  }
  for (const path of ['/rotor/nothing', '/rotor/tasks/', '/rotor/']) {
    t.equal(getHeader((await h.send('GET', path)).frame, 'Error'), 'ROTOR_E_NOT_FOUND', `GET ${path}`);
  }
});

t.test('errors before admission do not rotate and leave the token usable', async (t) => {
  const h = await harness(app);
  const token = await h.login();
  const cases: Array<[string, string, Array<[string, string]>, string | undefined, string]> = [
    ['GET', '/ok', [], undefined, 'ROTOR_E_TOKEN_MISSING'],
    ['GET', '/ok', [['Token', 'k1.garbage.mac']], undefined, 'ROTOR_E_TOKEN_INVALID'],
    ['GET', '/ok', [['Token', token.slice(0, -3) + 'AAA']], undefined, 'ROTOR_E_TOKEN_INVALID'],
    ['PUT', '/rotor/token', [['Token', token]], '[1,2]', 'ROTOR_E_BAD_REQUEST'],
    ['PUT', '/rotor/token', [['Token', token]], '{not json', 'ROTOR_E_BAD_REQUEST'],
    ['PUT', '/rotor/token', [['Token', token], ['Content-Type', 'text/plain']], '{}', 'ROTOR_E_BAD_REQUEST'],
    ['POST', '/rotor/token', [], '{}', 'ROTOR_E_FORBIDDEN'],
    ['GET', '/rotor/nothing', [['Token', token]], undefined, 'ROTOR_E_NOT_FOUND'],
    ['POST', '/rotor/login', [['User', 'alice']], undefined, 'ROTOR_E_BAD_REQUEST'],
  ];
  for (const [verb, path, headers, body, code] of cases) {
    const { frame } = await h.send(verb, path, headers, body);
    t.equal(getHeader(frame, 'Error'), code, `${verb} ${path} → ${code}`);
    t.equal(getHeader(frame, 'Token'), undefined, `${verb} ${path} gives no token`);
  }
  const after = await h.send('GET', '/ok', [['Token', token]]);
  t.equal(after.frame.status, 200, 'the token still works');
});

t.test('a response frame from a client is a protocol error', async (t) => {
  const h = await harness(app);
  const reply = await h.rotor.dispatch({ kind: 'response', status: 200, reason: 'OK', headers: [], body: undefined });
  t.equal(reply.close, true);
  t.match(reply.bytes.toString(), 'Error: ROTOR_E_BAD_START_LINE');
});

t.test('deferred work: held until the ack, run once, result and failure fetched', async (t) => {
  runs.length = 0;
  const h = await harness(app);
  const t1 = await h.login();
  const work = await h.send('POST', '/defers', [['Token', t1]], 'payload-1');
  t.equal(work.frame.status, 202);
  t.equal(getHeader(work.frame, 'Wait-for'), '7', 'the handler’s estimate is passed on');
  const taskId = getHeader(work.frame, 'Task')!;
  const t2 = getHeader(work.frame, 'Token')!;
  h.rotor.tasks.start();
  await h.rotor.tasks.idle();
  t.same(runs, [], 'nothing runs before the ack');
  const pending = await h.send('GET', `/rotor/tasks/${taskId}`, [['Token', t2]]);
  t.ok([200, 202].includes(pending.frame.status), 'fetching with the new token acks and answers');
  await h.rotor.tasks.idle();
  t.same(runs, ['payload-1'], 'the ack released it, it ran once');
  const t3 = getHeader(pending.frame, 'Token')!;
  const result = await h.send('GET', `/rotor/tasks/${taskId}`, [['Token', t3]]);
  t.equal(result.frame.status, 200);
  t.equal(result.frame.body?.toString(), 'did payload-1');
  let token = getHeader(result.frame, 'Token')!;

  const failing = await h.send('POST', '/fails', [['Token', token]]);
  const failedId = getHeader(failing.frame, 'Task')!;
  token = getHeader(failing.frame, 'Token')!;
  const ack = await h.send('POST', '/rotor/ack', [['Token', token]]);
  t.equal(ack.frame.status, 200);
  t.equal(getHeader(ack.frame, 'Token'), undefined, 'an ack does not rotate');
  await h.rotor.tasks.idle();
  const failed = await h.send('GET', `/rotor/tasks/${failedId}`, [['Token', token]]);
  t.equal(getHeader(failed.frame, 'Error'), 'ROTOR_E_TASK_FAILED');
  t.equal(failed.frame.body?.toString(), 'task exploded');
  token = getHeader(failed.frame, 'Token')!;
  const unknown = await h.send('GET', '/rotor/tasks/nope', [['Token', token]]);
  t.equal(getHeader(unknown.frame, 'Error'), 'ROTOR_E_TASK_UNKNOWN');
  t.same(runs, ['payload-1'], 'still exactly one run');
  await h.rotor.stop();
});

t.test('a task of another session is unknown to this one', async (t) => {
  const h = await harness(app);
  const mine = await h.login();
  const work = await h.send('POST', '/defers', [['Token', mine]], 'x');
  const taskId = getHeader(work.frame, 'Task')!;
  const other = await h.login();
  const peek = await h.send('GET', `/rotor/tasks/${taskId}`, [['Token', other]]);
  t.equal(getHeader(peek.frame, 'Error'), 'ROTOR_E_TASK_UNKNOWN');
});

t.test('expiry: a token past its lifetime is refused, a fresh one works', async (t) => {
  const h = await harness(app, { session: { tokenTtlMinutes: 5 } });
  const token = await h.login();
  h.clock.now += 4 * 60_000;
  const ok = await h.send('GET', '/ok', [['Token', token]]);
  t.equal(ok.frame.status, 200);
  const next = getHeader(ok.frame, 'Token')!;
  h.clock.now += 5 * 60_000 + 1;
  const late = await h.send('GET', '/ok', [['Token', next]]);
  t.equal(getHeader(late.frame, 'Error'), 'ROTOR_E_TOKEN_EXPIRED');
});

t.test('logout and delete end the session', async (t) => {
  const h = await harness(app);
  for (const [verb, path, status] of [['POST', '/rotor/logout', 200], ['DELETE', '/rotor/token', 202]] as const) {
    const token = await h.login();
    const end = await h.send(verb, path, [['Token', token]]);
    t.equal(end.frame.status, status, `${path} status`);
    const after = await h.send('GET', '/ok', [['Token', token]]);
    t.equal(getHeader(after.frame, 'Error'), 'ROTOR_E_SESSION_REVOKED', `${path}: the session is over`);
  }
});

t.test('held tasks of a revoked session never run', async (t) => {
  runs.length = 0;
  const h = await harness(app);
  h.rotor.tasks.start();
  const t1 = await h.login();
  const first = await h.send('GET', '/ok', [['Token', t1]]);
  const t2 = getHeader(first.frame, 'Token')!;
  await h.send('POST', '/defers', [['Token', t2]], 'never');
  const reuse = await h.send('GET', '/ok', [['Token', t1]]);
  t.equal(getHeader(reuse.frame, 'Error'), 'ROTOR_E_TOKEN_REUSED');
  await h.rotor.tasks.idle();
  t.same(runs, [], 'the held task was cancelled');
  await h.rotor.stop();
});
