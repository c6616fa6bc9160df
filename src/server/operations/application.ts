import { RotorError, type ErrorCode } from '../../errors.ts';
import type { SessionState, TaskSpec } from '../../session/types.ts';
import { getHeader, type Header, type RequestFrame } from '../../wire/index.ts';
import { Router, type AppReply, type AppRequest, type RotorApp } from '../app.ts';
import type { ExchangeOperation } from '../exchange.ts';
import { SEAT_HEADERS } from '../../seats/operations.ts';
import { coveredHeaders } from '../../seal/proof.ts';
import { errorOutcome, type DispatchContext, type Outcome } from '../context.ts';

/** Headers only rotor sets; an application handler setting one is a bug. */
const RESERVED_HEADERS = new Set(['token', 'error', 'task', 'wait-for', 'bin-length', 'server', 'content-type', 'out-of-band', 'hand-over', 'seal-nonce', 'seal-key', ...SEAT_HEADERS]);

/** Everything outside /rotor/: the application's handler for the path, inside an exchange. */
export function application(ctx: DispatchContext, app: RotorApp): (frame: RequestFrame, path: string, query: string) => ExchangeOperation {
  const router = new Router(app.routes);
  const taskNames = new Set(Object.keys(app.tasks));
  return (frame, path, query) => ({
    async perform(admitted, _released, now) {
      return { kind: 'rotate', outcome: await runHandler(ctx, router, taskNames, admitted, frame, path, query, now) };
    },
  });
}

async function runHandler(
  ctx: DispatchContext,
  router: Router,
  taskNames: ReadonlySet<string>,
  state: SessionState,
  frame: RequestFrame,
  path: string,
  query: string,
  now: number,
): Promise<Outcome> {
  const failed = (code: ErrorCode): Outcome => ({ ...errorOutcome(code), tasks: [], meta: state.meta });
  const match = router.match(frame.verb, path);
  if ('error' in match) {
    const outcome = failed(match.error);
    if (match.error === 'ROTOR_E_METHOD_NOT_ALLOWED') outcome.headers.push(['Allow', match.allow.join(', ')]);
    return outcome;
  }
  // A sealed request's handler sees only the headers its proof covers (spec §12): any other may
  // have been added on the way.
  const headers = state.seal === null ? frame.headers : (coveredHeaders(frame.headers, getHeader(frame, 'Seal-Headers')) ?? []);
  const request: AppRequest = {
    verb: frame.verb,
    path,
    query,
    headers,
    header: state.seal === null ? (name) => getHeader(frame, name) : (name) => headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1],
    body: frame.body,
    user: state.user,
    sessionId: state.id,
    meta: state.meta,
  };
  let reply: AppReply;
  try {
    reply = await match.handler(request);
  } catch (err) {
    if (err instanceof RotorError && !err.fatal) return failed(err.code);
    ctx.log.error({ err, path }, 'handler failed');
    return failed('ROTOR_E_HANDLER_FAILED');
  }
  let outcome: Outcome;
  try {
    outcome = toOutcome(ctx, taskNames, state, frame.verb, reply);
    if (reply.handOver !== undefined) {
      if (!ctx.handOver) throw new Error(`hand-over to ${JSON.stringify(reply.handOver)}: this server has no peers`);
      // A hand-over token is a bearer credential at the peer: a sealed session's key could not follow it (spec §12).
      if (state.seal !== null) throw new Error('a sealed session is not handed over');
      outcome.headers.push(...ctx.handOver.ask(state, reply.handOver, now));
      outcome.handOver = true;
    }
  } catch (err) {
    ctx.log.error({ err, path }, 'handler returned a bad reply');
    return failed('ROTOR_E_HANDLER_FAILED');
  }
  // Before the reply is stored: the parent's end is then listed, whatever happens after.
  if (outcome.handOver) await ctx.handOver!.issued(state.id, now);
  return outcome;
}

/** Check an application's reply and turn it into an outcome; throws on a handler bug. */
function toOutcome(ctx: DispatchContext, taskNames: ReadonlySet<string>, state: SessionState, verb: string, reply: AppReply): Outcome {
  const { session, wire } = ctx.config;
  const deferrals = reply.defer === undefined ? [] : Array.isArray(reply.defer) ? reply.defer : [reply.defer];
  if (deferrals.length > 0 && verb === 'GET') throw new Error('a GET may not defer work');
  if (deferrals.length > session.maxTasksPerExchange) throw new Error('too many deferred tasks');
  const tasks: TaskSpec[] = deferrals.map((d) => {
    if (!taskNames.has(d.task)) throw new Error(`no task handler named ${d.task}`);
    return { id: ctx.random(12).toString('base64url'), name: d.task, payload: d.payload ?? null };
  });
  const status = reply.status ?? (tasks.length > 0 ? 202 : 200);
  if (!Number.isInteger(status) || status < 200 || status > 599) throw new Error(`bad status ${status}`);
  const headers: Header[] = [];
  if (tasks.length > 0) {
    const wait = Math.max(...deferrals.map((d) => d.waitForSeconds ?? session.defaultWaitForSeconds));
    headers.push(['Task', tasks.map((t) => t.id).join(',')], ['Wait-for', String(wait)]);
  }
  if (reply.contentType) headers.push(['Content-Type', reply.contentType]);
  for (const [name, value] of Object.entries(reply.headers ?? {})) {
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw new Error(`a handler may not set ${name}`);
    headers.push([name, value]);
  }
  const meta = reply.meta ? { ...state.meta, ...reply.meta } : state.meta;
  if (reply.meta && Buffer.byteLength(JSON.stringify(meta)) > session.maxMetaBytes) throw new Error('metadata too large');
  const body = reply.body === undefined ? undefined : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
  if (body && body.length > wire.maxBodyBytes) throw new Error('reply body over the body limit');
  return { status, headers, body, tasks, meta };
}
