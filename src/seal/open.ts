/**
 * `GET /rotor/seal` (an open nonce) and `POST /rotor/seal` (open a sealed session), spec §12.
 * An open is checked in the spec's order, each step before the next is looked at; an unknown
 * app, a bad signature and a nonce this server did not make count as a failed login of the
 * source address, so a flood of forged seals (≈ 100 µs of Ed25519 each) is held off.
 */
import { verify } from 'node:crypto';
import { RotorError } from '../errors.ts';
import { addressKey, type Origin } from '../net/origin.ts';
import { LoginThrottle } from '../server/auth.ts';
import { bindingOf, parseMetaBody, plainReply, type DispatchContext, type Note } from '../server/context.ts';
import { openSession } from '../server/operations/open-session.ts';
import { counted, throttled } from '../server/operations/login.ts';
import { getHeader, type Reply, type RequestFrame } from '../wire/index.ts';
import { APP_ID, INSTANCE_ID, instanceAllowed, loadApp, noteFirstOpen } from './apps.ts';
import { freshSeal } from './machine.ts';
import { bodyDigest, bytes32, bytes64, ed25519Public, openText, sessionKey, sessionKeyInfo, x25519Pair, x25519Shared } from './proof.ts';
import { SEAL_NONCE, type UsedNonceRecord } from './types.ts';

export const SEAL_PATH = '/rotor/seal';
const MAX_NONCE_CHARS = 128;

/** `GET /rotor/seal`: a fresh open nonce. */
export function openNonce(ctx: DispatchContext): Reply {
  return plainReply(200, [['Seal-Nonce', ctx.seals.keys.openNonce(ctx.now())]]);
}

/** `POST /rotor/seal`: the open (spec §12 "Opening and sealing"). */
export function openSealed(ctx: DispatchContext): (frame: RequestFrame, note: Note, path: string, origin?: Origin) => Promise<Reply> {
  const throttle = new LoginThrottle(ctx.config.auth, ctx.store);
  return async (frame, note, _path, origin) => {
    const app = getHeader(frame, 'App');
    const instance = getHeader(frame, 'Instance');
    const nonce = getHeader(frame, 'Seal-Nonce');
    const sealKey = getHeader(frame, 'Seal-Key');
    const seal = getHeader(frame, 'Seal');
    if (app === undefined || instance === undefined || nonce === undefined || sealKey === undefined || seal === undefined) {
      throw new RotorError('ROTOR_E_BAD_REQUEST', 'an open needs App, Instance, Seal-Nonce, Seal-Key and Seal');
    }
    const instancePublic = bytes32(sealKey);
    const signature = bytes64(seal);
    if (!APP_ID.test(app) || !INSTANCE_ID.test(instance) || nonce.length > MAX_NONCE_CHARS || !instancePublic || !signature) {
      throw new RotorError('ROTOR_E_BAD_REQUEST', 'App, Instance, Seal-Nonce, Seal-Key or Seal is malformed');
    }
    const address = addressKey(origin?.peer);
    const keys = throttle.openKeys(address);
    const waiting = await throttle.waitMs(keys, ctx.now());
    if (waiting > 0) return throttled(note, waiting);
    // What costs a store read or an Ed25519 check is counted; a nonce refused by its MAC costs no more than the count would.
    return counted(throttle, keys, ctx.now(), ['ROTOR_E_APP_UNKNOWN', 'ROTOR_E_SEAL_INVALID'], async () => {
      const now = ctx.now();
      const fresh = ctx.seals.keys.checkOpenNonce(nonce, now, ctx.config.seal.openNonceSeconds * 1000, ctx.config.keys.skewSeconds * 1000);
      if (!fresh) throw new RotorError('ROTOR_E_SEAL_NONCE_EXPIRED');
      const record = await loadApp(ctx.store, app);
      if (!record) throw new RotorError('ROTOR_E_APP_UNKNOWN');
      const appPublic = bytes32(record.publicKey);
      // The body is signed too: the session's initial metadata is the instance's, not the path's.
      if (!appPublic || !verify(null, Buffer.from(openText(app, instance, nonce, sealKey, bodyDigest(frame.body))), ed25519Public(appPublic), signature)) throw new RotorError('ROTOR_E_SEAL_INVALID');
      const server = x25519Pair(ctx.random(32));
      const serverKey = server.publicRaw.toString('base64url');
      let shared: Buffer;
      try {
        shared = x25519Shared(server.privateKey, instancePublic);
      } catch {
        throw new RotorError('ROTOR_E_SEAL_INVALID', 'Seal-Key is not a usable X25519 public key');
      }
      const key = sessionKey(shared, nonce, sessionKeyInfo(app, instance, sealKey, serverKey));
      if (!key) throw new RotorError('ROTOR_E_SEAL_INVALID', 'Seal-Key is a low-order point');
      note.user = `app:${app}/${instance}`;
      const known = await instanceAllowed(ctx.store, record, app, instance);
      if (!known.allowed) throw new RotorError('ROTOR_E_INSTANCE_UNKNOWN');
      const meta = parseMetaBody(frame, ctx.config.session.maxMetaBytes);
      if (!(await ctx.store.createRecords<UsedNonceRecord>(SEAL_NONCE, [{ id: fresh.id, value: { expiresAt: fresh.expiresAt } }]))) throw new RotorError('ROTOR_E_SEAL_NONCE_USED');
      // Only an open that opens registers its instance's first open.
      await noteFirstOpen(ctx.store, app, instance, known.found, now, origin?.peer);
      const id = ctx.random(16).toString('base64url');
      const sealed = { seal: freshSeal(app, instance, ctx.seals.keys.wrap(id, key)), serverKey };
      const { reply, state } = await openSession(ctx, note.user, meta, id, bindingOf(ctx, frame, address), undefined, sealed);
      note.session = state.id;
      return reply;
    });
  };
}
