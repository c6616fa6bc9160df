import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionLimits } from '../config/defaults.ts';
import type { ErrorCode } from '../errors.ts';
import { Admission, refuse, type Carrier, type ListenerHooks } from './admission.ts';
import type { ConnectionCore } from './core.ts';
import { Sweeper } from './sweep.ts';

/**
 * What every listener does around its connections, once (TCP/TLS in tcp.ts, HTTP with its
 * WebSockets in http.ts): the connection caps (admission.ts) and the refusal of a socket over
 * them, the live set, one deadline sweep over every connection of whatever kind (the WebSocket
 * pings are deadlines of theirs too), and the graceful close.
 *
 * Close: stop accepting; every connection shuts down as spec.md §7 "Shutdown" says (core.ts);
 * a connection that comes up during the grace (a TLS handshake finishing) shuts down at once;
 * once all are gone, or `connection.shutdownGraceMs` has passed, whatever is left is destroyed.
 */
export class ListenerShell {
  readonly admission: Admission;
  private readonly live = new Set<ConnectionCore<unknown>>();
  /** Every socket holding a slot (TLS ones before their handshake too): destroyed if still open after the grace. */
  private readonly sockets = new Set<Duplex>();
  private readonly sweeper: Sweeper<ConnectionCore<unknown>>;
  private stopping = false;
  private closed: Promise<void> | undefined;
  private emptied: (() => void) | undefined;

  constructor(
    private readonly limits: ConnectionLimits,
    carrier: Carrier,
    hooks?: ListenerHooks,
  ) {
    this.admission = new Admission(limits, carrier, hooks);
    this.sweeper = new Sweeper(
      () => this.live,
      (connection, now) => connection.overdue(now),
      (connection, now) => connection.sweep(now),
      { intervalMs: limits.sweepIntervalMs, batchSize: limits.sweepBatchSize },
    );
  }

  /** Connections up (after their TLS handshake, if any). */
  get connections(): number {
    return this.live.size;
  }

  get shuttingDown(): boolean {
    return this.stopping;
  }

  /**
   * Give a socket that just connected its slot, or refuse it (ROTOR_E_TOO_MANY_CONNECTIONS, or
   * ROTOR_E_SHUTTING_DOWN while closing) — with `answer(code)` where there is a way to say why.
   */
  admit(socket: net.Socket, answer?: (code: ErrorCode) => Buffer | string): boolean {
    const refusal = this.admission.admit(socket, this.stopping);
    if (refusal) {
      refuse(socket, answer?.(refusal));
      return false;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    return true;
  }

  /** A connection is up: it is swept, and shut down with the listener (at once, if that has begun). */
  add(connection: ConnectionCore<unknown>): void {
    this.live.add(connection);
    connection.whenClosed(() => {
      this.live.delete(connection);
      if (this.live.size === 0) this.emptied?.();
    });
    if (this.stopping) connection.shutdown();
  }

  /** Stop accepting, shut every connection down, and destroy what is left after the grace. Idempotent. */
  close(server: net.Server): Promise<void> {
    this.closed ??= this.closeNow(server);
    return this.closed;
  }

  private async closeNow(server: net.Server): Promise<void> {
    this.stopping = true;
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    const emptied = new Promise<void>((resolve) => (this.emptied = resolve));
    for (const connection of this.live) connection.shutdown();
    if (this.live.size === 0) this.emptied?.();
    await Promise.race([emptied, delay(this.limits.shutdownGraceMs)]);
    for (const connection of this.live) connection.destroy();
    for (const socket of this.sockets) socket.destroy();
    this.sweeper.stop();
    await Promise.race([stopped, delay(100)]);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
