/** What the sealed-session tests share (not a test file): a harness with an app, and a confirmed sealed session as a spec-abiding instance holds it. */
import { exampleApp } from '../../src/app/example.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { addApp } from '../../src/seal/apps.ts';
import { startOpen, type AppIdentity } from '../../src/seal/instance.ts';
import { proofHeaders, sealProof } from '../../src/seal/proof.ts';
import { seededRandom } from '../../src/session/random.ts';
import { getHeader, type Header, type ResponseFrame } from '../../src/wire/index.ts';
import { harness, type Harness } from '../server/harness.ts';

export type Sent = { frame: ResponseFrame; bytes: Buffer };
export const error = (reply: Sent): string | undefined => getHeader(reply.frame, 'Error');

/** A harness (memory store, fake clock) with the app `billing` registered, and an instance identity of it. */
export async function setup(app: RotorApp = exampleApp(), config = {}, policy: 'open' | 'listed' = 'open') {
  const h = await harness(app, config);
  const registered = await addApp(h.store, 'billing', policy, h.clock.now, seededRandom(21));
  const identity: AppIdentity = { app: registered.id, instance: 'host-1', key: registered.key };
  return { h, app: registered, identity };
}

export const openNonce = async (h: Harness): Promise<string> => getHeader((await h.send('GET', '/rotor/seal')).frame, 'Seal-Nonce')!;

export type SealedSession = Awaited<ReturnType<typeof sealedSession>>;

/** A confirmed sealed session: its key, newest token and nonce, and proven requests that keep them. */
export async function sealedSession(h: Harness, identity: AppIdentity) {
  const pending = startOpen(identity, await openNonce(h));
  const opened = await h.send('POST', '/rotor/seal', pending.headers);
  const key = pending.sessionKey(getHeader(opened.frame, 'Seal-Key')!)!;
  const s = {
    key,
    token: getHeader(opened.frame, 'Token')!,
    nonce: getHeader(opened.frame, 'Seal-Nonce')!,
    /** The Seal-Proof of a request under the newest token (covering no headers). */
    proof: (verb: string, path: string, body?: string) => sealProof(key, s.nonce, verb, path, body === undefined ? undefined : Buffer.from(body)),
    /** A proven request under the newest token, its `extra` headers covered. */
    frame(verb: string, path: string, body?: string, extra: Header[] = []) {
      const bytes = body === undefined ? undefined : Buffer.from(body);
      return { verb, path, headers: [['Token', s.token], ...proofHeaders(key, s.nonce, verb, path, bytes, extra), ...extra] as Header[], body };
    },
    /** Take a reply's Token and Seal-Nonce, as the token rule says. */
    take(reply: Sent) {
      const next = getHeader(reply.frame, 'Token');
      if (next) {
        s.token = next;
        s.nonce = getHeader(reply.frame, 'Seal-Nonce')!;
      }
      return reply;
    },
    async send(verb: string, path: string, body?: string, extra: Header[] = []) {
      const f = s.frame(verb, path, body, extra);
      return s.take(await h.send(f.verb, f.path, f.headers, f.body));
    },
  };
  if (error(await s.send('POST', '/rotor/ack')) !== undefined) throw new Error('the open was not confirmed');
  return s;
}
