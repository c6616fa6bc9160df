import type { Header } from '../wire/index.ts';

/** What an application handler sees of a request that was admitted with a valid token. */
export interface AppRequest {
  readonly verb: string;
  /** The path without its query string. */
  readonly path: string;
  /** The query string without '?', or ''. */
  readonly query: string;
  readonly headers: readonly Header[];
  header(name: string): string | undefined;
  readonly body: Buffer | undefined;
  readonly user: string;
  readonly sessionId: string;
  readonly meta: Readonly<Record<string, unknown>>;
}

/** Work to do after the client acknowledges the new token. */
export interface Deferral {
  /** Name of a task handler registered in `RotorApp.tasks`. */
  task: string;
  /** JSON-able data the task gets. */
  payload?: unknown;
  /** The client's hint when to ask for the result (`Wait-for`, seconds). */
  waitForSeconds?: number | undefined;
}

export interface AppReply {
  /** Default 200, or 202 when `defer` is set. */
  status?: number | undefined;
  /** Application headers; rotor's own (Token, Error, Task, Wait-for, BIN-Length, Server) are refused. */
  headers?: Record<string, string> | undefined;
  body?: Buffer | string | undefined;
  contentType?: string | undefined;
  /**
   * Side effects, run only after the ack, at most once per claim (see TaskHandler: a task can run
   * again after a crash); only non-GET requests may defer.
   */
  defer?: Deferral | Deferral[] | undefined;
  /** Keys merged into the session's metadata. */
  meta?: Record<string, unknown> | undefined;
  /**
   * Send the client on to this peer (a name in the peers file, spec §11): the reply also carries
   * `Out-of-band` (the peer's address) and `Hand-over` (a token for a login there). A peer this
   * server does not know, or a server without peers, is a handler bug (ROTOR_E_HANDLER_FAILED).
   */
  handOver?: string | undefined;
}

/**
 * A handler must not cause side effects itself: it may run and be thrown away when a
 * concurrent exchange on the same session wins. Anything that changes the world is a task.
 */
export type Handler = (request: AppRequest) => AppReply | Promise<AppReply>;

export interface TaskContext {
  /** Stable across every run of this task: the idempotency key for its effect. */
  readonly taskId: string;
  readonly user: string;
  readonly sessionId: string;
  /** Which claim this run is: 1 the first time, more when an earlier run's outcome was never stored. */
  readonly attempt: number;
  /**
   * Fires when the handler must stop: at `tasks.timeoutMs` (the task then ends timed out,
   * whatever the handler does after), or when the node shuts down past its grace (the task is
   * then left for another run). Pass it on to whatever the handler waits for.
   */
  readonly signal: AbortSignal;
}

export interface TaskResult {
  body?: Buffer | string | undefined;
  contentType?: string | undefined;
}

/**
 * Runs a task after the ack. Each claim of the task runs it at most once, but a task can be
 * claimed again — the same `taskId`, a higher `attempt` — when an earlier run's outcome was not
 * stored: its node died or was stopped mid-run, or storing the outcome kept failing. Exactly
 * once is not possible across a crash (the effect and the stored outcome cannot commit
 * together), so a handler whose effect must not happen twice makes it idempotent by `taskId`
 * (an idempotency key at the payment provider, a unique key in its own database).
 *
 * Resolve with the result; reject to fail the task (`ROTOR_E_TASK_FAILED`, the message as its
 * body). Past `tasks.timeoutMs` the task ends timed out (`ROTOR_E_TASK_TIMED_OUT`: the effect
 * may or may not have happened) and is not run again; honour `signal` so it stops there.
 */
export type TaskHandler = (payload: unknown, context: TaskContext) => Promise<TaskResult | string | Buffer | void>;

export interface RotorApp {
  /** Keys are `VERB /path`; a path ending in `/*` matches everything below it. */
  routes: Record<string, Handler>;
  tasks: Record<string, TaskHandler>;
}

export type RouteMatch =
  | { handler: Handler }
  | { error: 'ROTOR_E_NOT_FOUND' }
  /** `allow`: the verbs the path does take, for the reply's Allow header. */
  | { error: 'ROTOR_E_METHOD_NOT_ALLOWED'; allow: string[] };

/** Exact routes by `VERB /path`, then prefix routes, longest first. */
export class Router {
  private readonly exact = new Map<string, Handler>();
  /** Path → the verbs its exact routes take. */
  private readonly exactPaths = new Map<string, string[]>();
  private readonly prefixes: Array<{ verb: string; prefix: string; handler: Handler }> = [];

  constructor(routes: Record<string, Handler>) {
    for (const [key, handler] of Object.entries(routes)) {
      const match = /^([A-Z]{1,16}) (\/\S*)$/.exec(key);
      if (!match) throw new Error(`bad route ${JSON.stringify(key)}: want "VERB /path"`);
      const [, verb, path] = match;
      if (path.startsWith('/rotor/') || path === '/rotor') throw new Error(`route ${key}: /rotor/ is reserved`);
      if (path.endsWith('/*')) this.prefixes.push({ verb, prefix: path.slice(0, -1), handler });
      else {
        this.exact.set(`${verb} ${path}`, handler);
        this.exactPaths.set(path, [...(this.exactPaths.get(path) ?? []), verb]);
      }
    }
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  match(verb: string, path: string): RouteMatch {
    const handler = this.exact.get(`${verb} ${path}`);
    if (handler) return { handler };
    const allow = new Set(this.exactPaths.get(path));
    for (const route of this.prefixes) {
      if (!path.startsWith(route.prefix)) continue;
      if (route.verb === verb) return { handler: route.handler };
      allow.add(route.verb);
    }
    return allow.size > 0 ? { error: 'ROTOR_E_METHOD_NOT_ALLOWED', allow: [...allow].sort() } : { error: 'ROTOR_E_NOT_FOUND' };
  }
}
