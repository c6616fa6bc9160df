import net from 'node:net';
import tls from 'node:tls';
import type { RotorConfig } from '../config/defaults.ts';
import type { Logger } from '../log/index.ts';
import { errorReply } from '../wire/index.ts';
import { fromOrigin, type ListenerHooks, type OriginAwareHandler } from './admission.ts';
import { StreamConnection, type Held } from './connection.ts';
import { listenOn } from './listen.ts';
import { ListenerShell } from './shell.ts';

export interface ListenOptions {
  host: string;
  port: number;
  /** PEM key and certificate: TCP becomes TLS. */
  tls?: { key: string | Buffer; cert: string | Buffer } | undefined;
  hooks?: ListenerHooks | undefined;
}

export interface Listener {
  readonly address: { host: string; port: number };
  readonly connections: number;
  /** Stop accepting, let in-flight frames finish, close; destroys what is left after the grace. Idempotent. */
  close(): Promise<void>;
}

export interface StreamListener extends Listener {
  /** The most any one connection has held at once since the start (frames unanswered, bytes unparsed). */
  readonly peakHeld: Readonly<Held>;
  /** Sockets holding a connection slot, TLS handshakes still under way included. */
  readonly admitted: number;
}

/**
 * Serve rotor frames over TCP (or TLS). Any Duplex would do — the connection logic lives in
 * StreamConnection and the core under it — and the listener shell (shell.ts) adds the
 * connection caps, the deadline sweep and graceful close.
 */
export async function listenStream(handler: OriginAwareHandler, config: RotorConfig, log: Logger, options: ListenOptions): Promise<StreamListener> {
  const limits = config.connection;
  const carrier = options.tls ? 'tls' : 'tcp';
  const shell = new ListenerShell(limits, carrier, options.hooks);
  const peakHeld: Held = { frames: 0, bytes: 0 };

  const accept = (socket: net.Socket) => {
    // TLS sockets were counted before their handshake (below); a plain one is counted here.
    if (!options.tls && !shell.admit(socket, (code) => errorReply(code).bytes)) return;
    socket.setNoDelay(true);
    shell.add(new StreamConnection(socket, fromOrigin(handler, { carrier, peer: socket.remoteAddress }), config.wire, limits, log, peakHeld));
  };

  // Half-open: a peer's FIN ends only its side. StreamConnection then answers every frame already
  // received, in order, and ends ours (node would otherwise end our side at once, dropping them).
  // A TLS handshake is bounded by the header deadline, and its socket takes a slot from the moment
  // it connects: counted only after the handshake, one address could hold sockets without limit.
  const server = options.tls
    ? tls.createServer({ key: options.tls.key, cert: options.tls.cert, allowHalfOpen: true, handshakeTimeout: limits.headerTimeoutMs }, accept)
    : net.createServer({ allowHalfOpen: true }, accept);
  // Refused before the handshake there is no channel to say why in: the socket is dropped, as on HTTPS.
  if (options.tls) server.on('connection', (raw: net.Socket) => shell.admit(raw));
  server.on('tlsClientError', (err) => log.debug({ err }, 'TLS handshake failed'));

  const bound = await listenOn(server, options.port, options.host, limits.listenBacklog, log, options.tls ? 'TLS' : 'TCP');

  return {
    address: { host: bound.address, port: bound.port },
    get connections() {
      return shell.connections;
    },
    get admitted() {
      return shell.admission.connections;
    },
    peakHeld,
    close: () => shell.close(server),
  };
}
