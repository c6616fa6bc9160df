import type { Duplex } from 'node:stream';
import type { ConnectionLimits } from '../config/defaults.ts';
import type { ErrorCode } from '../errors.ts';
import type { Frame, Reply } from '../wire/index.ts';
import { linger, type FrameHandler } from './core.ts';

import { addressKey, type Carrier, type Origin } from '../net/origin.ts';

export { addressKey, type Carrier, type Origin };

/** A frame handler that may be told each frame's origin (Rotor is); one that takes only the frame ignores it. */
export interface OriginAwareHandler {
  dispatch(frame: Frame, origin?: Origin): Promise<Reply>;
}

/** The handler for one connection's frames: `handler`, told where they come from. Made once per connection. */
export function fromOrigin(handler: OriginAwareHandler, origin: Origin): FrameHandler {
  return { dispatch: (frame) => handler.dispatch(frame, origin) };
}

/** What a listener tells whoever watches it (metrics, the security log). */
export interface ListenerHooks {
  /** A connection was refused before a frame was read: at a connection cap, or while shutting down. */
  refused?: ((code: ErrorCode, origin: Origin) => void) | undefined;
}

/**
 * Who may connect to one listener: at most `maxConnections` connections at once, and at most
 * `maxConnectionsPerAddress` of them from one source address, so one peer cannot take every
 * slot. Every listener (TCP, TLS, HTTP and the WebSockets on it) counts here; a slot is taken
 * by `admit` and given back when the socket closes.
 */
export class Admission {
  private readonly perAddress = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly limits: Pick<ConnectionLimits, 'maxConnections' | 'maxConnectionsPerAddress'>,
    private readonly carrier: Carrier = 'tcp',
    private readonly hooks: ListenerHooks = {},
  ) {}

  /** Connections holding a slot now. */
  get connections(): number {
    return this.total;
  }

  /** Take a slot for `socket`, or the code it is refused with (always ROTOR_E_SHUTTING_DOWN once `shuttingDown`). */
  admit(socket: { remoteAddress?: string | undefined; once(event: 'close', listener: () => void): unknown }, shuttingDown = false): ErrorCode | undefined {
    const address = addressKey(socket.remoteAddress);
    const held = this.perAddress.get(address) ?? 0;
    const refusal = shuttingDown
      ? 'ROTOR_E_SHUTTING_DOWN'
      : this.total >= this.limits.maxConnections || held >= this.limits.maxConnectionsPerAddress
        ? 'ROTOR_E_TOO_MANY_CONNECTIONS'
        : undefined;
    if (refusal) {
      this.hooks.refused?.(refusal, { carrier: this.carrier, peer: socket.remoteAddress });
      return refusal;
    }
    this.total++;
    this.perAddress.set(address, held + 1);
    socket.once('close', () => {
      this.total--;
      const left = this.perAddress.get(address)! - 1;
      if (left === 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
    return undefined;
  }
}

/**
 * Refuse a connection: say why when there is a way to (`bytes`) and end; read and discard what
 * the peer sent, so its FIN closes the socket at once and unread input does not turn our close
 * into a reset that overtakes the answer; drop it after a second if the peer lingers.
 */
export function refuse(socket: Duplex, bytes?: Buffer | string): void {
  socket.on('error', () => {});
  if (bytes === undefined) {
    socket.destroy();
    return;
  }
  linger(socket, 1_000, bytes);
}
