/**
 * How the load generator's frames travel. A carrier opens one connection and hands back a pipe:
 * serialized request frames go in, parsed response frames come out in request order. The
 * load generator knows nothing else about the carrier, so a new one (HTTP, WebSocket) is one
 * `registerCarrier` call away.
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { FrameParser, type ResponseFrame } from '../wire/index.ts';

export interface CarrierTarget {
  host: string;
  port: number;
}

export interface PipeEvents {
  /** Response frames, in the order of the requests that caused them. */
  frames(frames: ResponseFrame[]): void;
  /** The connection is gone (also after `close()`); `reason` says why when it was not asked for. */
  closed(reason: string | undefined): void;
}

export interface FramePipe {
  /** Send request frames (serialized, latin1 text: one string per frame), in order, at once. */
  send(frames: string[]): void;
  close(): void;
}

export type Carrier = (target: CarrierTarget, events: PipeEvents) => Promise<FramePipe>;

/** A carrier that cannot run here (its module is not built yet, a dependency is missing). */
export class CarrierUnavailable extends Error {
  override name = 'CarrierUnavailable';
}

type Entry = Carrier | (() => Promise<Carrier>);
const registry = new Map<string, { entry: Entry; lazy: boolean }>();

/** Add a carrier. `lazy` entries are factories run on first use (they may throw CarrierUnavailable). */
export function registerCarrier(name: string, carrier: Carrier): void;
export function registerCarrier(name: string, factory: () => Promise<Carrier>, lazy: true): void;
export function registerCarrier(name: string, entry: Entry, lazy = false): void {
  registry.set(name, { entry, lazy });
}

export async function getCarrier(name: string): Promise<Carrier> {
  const found = registry.get(name);
  if (!found) throw new CarrierUnavailable(`unknown carrier ${JSON.stringify(name)} (known: ${[...registry.keys()].join(', ')})`);
  if (!found.lazy) return found.entry as Carrier;
  const carrier = await (found.entry as () => Promise<Carrier>)();
  registry.set(name, { entry: carrier, lazy: false });
  return carrier;
}

export function carrierNames(): string[] {
  return [...registry.keys()];
}

/** Frames over any byte stream: the codec's own parser reads the answers. */
function streamPipe(socket: net.Socket, events: PipeEvents): FramePipe {
  const parser = new FrameParser();
  let reason: string | undefined;
  socket.setNoDelay(true);
  socket.on('data', (chunk: Buffer) => {
    const { frames, error } = parser.push(chunk);
    if (frames.length > 0) events.frames(frames as ResponseFrame[]);
    if (error) {
      reason = `bad frame from server: ${error.code}`;
      socket.destroy();
    }
  });
  socket.on('error', (err) => (reason ??= err.message));
  socket.on('close', () => events.closed(reason));
  return {
    send(frames) {
      socket.write(frames.length === 1 ? frames[0] : frames.join(''), 'latin1');
    },
    close() {
      reason ??= undefined;
      socket.destroy();
    },
  };
}

function connectStream(open: () => net.Socket, events: PipeEvents): Promise<FramePipe> {
  return new Promise((resolve, reject) => {
    const socket = open();
    const fail = (err: Error) => reject(err);
    socket.once('error', fail);
    socket.once(socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect', () => {
      socket.off('error', fail);
      resolve(streamPipe(socket, events));
    });
  });
}

registerCarrier('tcp', (target, events) => connectStream(() => net.connect({ host: target.host, port: target.port }), events));

// A benchmark of a server on this machine: its certificate is whatever the operator made.
registerCarrier('tls', (target, events) =>
  connectStream(() => tls.connect({ host: target.host, port: target.port, servername: 'localhost', rejectUnauthorized: false }), events),
);

/** Carriers other engineers are building: available once their module exists. */
function pending(name: string, modules: string[], load: () => Promise<Carrier>): void {
  registerCarrier(
    name,
    async () => {
      const missing = modules.filter((m) => !existsSync(fileURLToPath(new URL(m, import.meta.url))));
      if (missing.length > 0) throw new CarrierUnavailable(`${missing.map((m) => m.replace('../', 'src/')).join(', ')} not built yet`);
      return load();
    },
    true,
  );
}

pending('http', ['../transport/http.ts', '../client/http.ts'], async () => {
  throw new CarrierUnavailable('the HTTP carrier has no load-generator adapter yet');
});
pending('ws', ['../transport/ws.ts', '../client/ws.ts'], async () => {
  throw new CarrierUnavailable('the WebSocket carrier has no load-generator adapter yet');
});
