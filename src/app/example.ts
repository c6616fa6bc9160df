import type { RotorApp } from '../server/app.ts';

/**
 * The example application `rotor serve` runs unless told otherwise: one of each kind of path,
 * so a new user sees the whole cycle (read, defer, ack, fetch the result).
 *
 *   GET  /hello    → "hello, <user>"                 (a read: answered at once)
 *   GET  /meta     → the session's metadata as JSON  (a read)
 *   POST /reverse  → 202 + Task id                   (work: runs only after the ack)
 *                    the task's result is the body reversed, fetched with GET /rotor/tasks/<id>
 *   POST /hand-over/<peer> → the client is sent on to a peer (spec §11; `rotor serve --peers`)
 */
export function exampleApp(): RotorApp {
  return {
    routes: {
      'GET /hello': (request) => ({ body: `hello, ${request.user || 'anonymous'}`, contentType: 'text/plain; charset=utf-8' }),
      'GET /meta': (request) => ({ body: JSON.stringify(request.meta), contentType: 'application/json' }),
      'POST /hand-over/*': (request) => ({ body: 'go on there', contentType: 'text/plain; charset=utf-8', handOver: request.path.slice('/hand-over/'.length) }),
      'POST /reverse': (request) => ({
        defer: { task: 'reverse', payload: (request.body ?? Buffer.alloc(0)).toString('base64'), waitForSeconds: 1 },
      }),
    },
    tasks: {
      reverse: async (payload) => {
        const bytes = Buffer.from(String(payload), 'base64');
        return { body: Buffer.from(bytes).reverse(), contentType: 'application/octet-stream' };
      },
    },
  };
}
