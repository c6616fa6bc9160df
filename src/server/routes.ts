/**
 * rotor's own paths, verb by verb: the one table the dispatcher routes /rotor/ frames by. Each
 * entry names the operation it counts as (metrics, logs) and runs one handler from
 * src/server/operations/. A known path asked with another verb is 405 with `Allow`. A new
 * capability is a folder of its own plus its lines here.
 */
import { RotorError } from '../errors.ts';
import type { Operation as OperationName } from '../metrics/index.ts';
import type { Origin } from '../net/origin.ts';
import type { RequestFrame, Reply } from '../wire/index.ts';
import { parseMetaBody, plainReply, SERVER_NAME, type DispatchContext, type Note } from './context.ts';
import { exchange } from './exchange.ts';
import { ack } from './operations/ack.ts';
import { createToken } from './operations/create-token.ts';
import { end } from './operations/end.ts';
import { login } from './operations/login.ts';
import { meta } from './operations/meta.ts';
import { resume } from './operations/resume.ts';
import { taskStatus } from './operations/task.ts';
import { poolOf, SEATS_PREFIX, seatOperation } from '../seats/operations.ts';
import { quotaOperation } from '../quotas/operations.ts';
import { REVOCATIONS_PATH, revocations } from '../handover/login.ts';
import { openNonce, openSealed, SEAL_PATH } from '../seal/open.ts';

export interface Route {
  operation: OperationName;
  /** `origin`: where the frame came from, when its carrier said (logins are throttled per source address). */
  run: (frame: RequestFrame, note: Note, path: string, origin?: Origin) => Promise<Reply> | Reply;
}
/** The verbs of one path. */
export type RouteVerbs = Readonly<Record<string, Route>>;

export const TASKS_PREFIX = '/rotor/tasks/';
/** What a task id may look like: rotor makes 16 base64url characters; anything far off is a bad request, not a store lookup. */
const TASK_ID = /^[A-Za-z0-9_-]{1,64}$/;

export interface RouteTable {
  /** The verbs of a /rotor/ path, or undefined: not found. */
  lookup(path: string): RouteVerbs | undefined;
}

export function ownRoutes(ctx: DispatchContext): RouteTable {
  const route = (operation: OperationName, run: Route['run']): Route => ({ operation, run });
  const maxMeta = ctx.config.session.maxMetaBytes;
  const exact = new Map<string, RouteVerbs>([
    ['/rotor/ping', { GET: route('ping', () => plainReply(200, [['Server', SERVER_NAME]])) }],
    ['/rotor/login', { POST: route('login', login(ctx)) }],
    [
      '/rotor/token',
      {
        POST: route('token', (frame, note, _path, origin) => createToken(ctx, frame, note, origin)),
        PUT: route('meta', (frame, note, _path, origin) => exchange(ctx, frame, meta(ctx, parseMetaBody(frame, maxMeta)), note, origin)),
        DELETE: route('delete', (frame, note, _path, origin) => exchange(ctx, frame, end(ctx, 'deleted', 202), note, origin)),
      },
    ],
    ['/rotor/resume', { POST: route('resume', (frame, note, _path, origin) => exchange(ctx, frame, resume, note, origin)) }],
    ['/rotor/ack', { POST: route('ack', (frame, note, _path, origin) => exchange(ctx, frame, ack, note, origin)) }],
    ['/rotor/quota', { GET: route('quota', (frame, note, _path, origin) => exchange(ctx, frame, quotaOperation, note, origin)) }],
    ['/rotor/logout', { POST: route('logout', (frame, note, _path, origin) => exchange(ctx, frame, end(ctx, 'logout', 200), note, origin)) }],
    [REVOCATIONS_PATH, { GET: route('revocations', (_frame, note, _path, origin) => revocations(ctx, note, origin)) }],
    [SEAL_PATH, { GET: route('seal', () => openNonce(ctx)), POST: route('seal', openSealed(ctx)) }],
  ]);
  const tasks: RouteVerbs = {
    GET: route('task', (frame, note, path, origin) => {
      const taskId = path.slice(TASKS_PREFIX.length);
      if (!TASK_ID.test(taskId)) throw new RotorError('ROTOR_E_BAD_REQUEST', 'not a task id');
      return exchange(ctx, frame, taskStatus(ctx, taskId), note, origin);
    }),
  };
  const seat = (kind: 'take' | 'give' | 'look'): Route['run'] => (frame, note, path, origin) => exchange(ctx, frame, seatOperation(ctx, kind, poolOf(path)), note, origin);
  const seats: RouteVerbs = { POST: route('seats', seat('take')), DELETE: route('seats', seat('give')), GET: route('seats', seat('look')) };
  const below = (prefix: string, path: string) => path.startsWith(prefix) && path.length > prefix.length;
  return {
    lookup: (path) => exact.get(path) ?? (below(TASKS_PREFIX, path) ? tasks : below(SEATS_PREFIX, path) ? seats : undefined),
  };
}
