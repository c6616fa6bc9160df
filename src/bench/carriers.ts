/**
 * How the load generator's frames travel. A carrier opens one connection and hands back a pipe:
 * serialized request frames go in, response frames come out in request order (read by
 * reader.ts, a lean reader: see there why not the codec's parser). The load generator knows
 * nothing else about the carrier, so a new one is one `registerCarrier` call away.
 */
import net from 'node:net';
import tls from 'node:tls';
import WebSocket from 'ws';
import type { ResponseFrame } from '../wire/index.ts';
import { HttpResponseReader, ResponseReader } from './reader.ts';

export { HttpResponseReader } from './reader.ts';

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
  const reader = new ResponseReader();
  let reason: string | undefined;
  socket.setNoDelay(true);
  socket.on('data', (chunk: Buffer) => {
    const { frames, error } = reader.push(chunk);
    if (frames.length > 0) events.frames(frames);
    if (error) {
      reason = `bad frame from server: ${error}`;
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

// ---- HTTP/1.1: the same frames as requests and responses, pipelined on keep-alive sockets -------

/**
 * A rotor request frame (as the templates make it) as an HTTP/1.1 request: the start line's
 * version becomes HTTP's, a Host header is added, BIN-Length becomes Content-Length. Rotor's
 * HTTP carrier maps it straight back (src/transport/http.ts).
 */
export function frameToHttp(frame: string): string {
  const lineEnd = frame.indexOf('\r\n');
  const start = frame.slice(0, lineEnd - ' ROTOR/1'.length);
  let rest = frame.slice(lineEnd);
  const length = rest.indexOf('\r\nBIN-Length: ');
  if (length !== -1) rest = `${rest.slice(0, length)}\r\nContent-Length: ${rest.slice(length + '\r\nBIN-Length: '.length)}`;
  return `${start} HTTP/1.1\r\nHost: 127.0.0.1${rest}`;
}

registerCarrier(
  'http',
  (target, events) =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: target.host, port: target.port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        socket.setNoDelay(true);
        const reader = new HttpResponseReader();
        let reason: string | undefined;
        socket.on('data', (chunk: Buffer) => {
          const { frames, error } = reader.push(chunk);
          if (frames.length > 0) events.frames(frames);
          if (error) {
            reason = error;
            socket.destroy();
          }
        });
        socket.on('error', (err) => (reason ??= err.message));
        socket.on('close', () => events.closed(reason));
        resolve({
          send(frames) {
            let text = '';
            for (const frame of frames) text += frameToHttp(frame);
            socket.write(text, 'latin1');
          },
          close: () => socket.destroy(),
        });
      });
    }),
);

// ---- WebSocket: one frame per binary message ---------------------------------------------------------

export const WS_PATH = '/rotor/ws';

registerCarrier(
  'ws',
  (target, events) =>
    new Promise((resolve, reject) => {
      const host = target.host.includes(':') && !target.host.startsWith('[') ? `[${target.host}]` : target.host;
      const socket = new WebSocket(`ws://${host}:${target.port}${WS_PATH}`, { perMessageDeflate: false });
      socket.binaryType = 'nodebuffer';
      socket.once('error', reject);
      socket.once('unexpected-response', (_request, response) => reject(new Error(`WebSocket upgrade refused: HTTP ${response.statusCode}`)));
      socket.once('open', () => {
        socket.off('error', reject);
        const reader = new ResponseReader();
        let reason: string | undefined;
        // Messages of one read arrive one by one; hand them over together, as a stream read would.
        let batch: ResponseFrame[] = [];
        const deliver = () => {
          const frames = batch;
          batch = [];
          events.frames(frames);
        };
        socket.on('message', (data: Buffer) => {
          const { frames, error } = reader.push(data);
          if (frames.length > 0) {
            if (batch.length === 0) process.nextTick(deliver);
            for (const frame of frames) batch.push(frame);
          }
          if (error) {
            reason = `bad frame from server: ${error}`;
            socket.terminate();
          }
        });
        socket.on('error', (err) => (reason ??= err.message));
        socket.on('close', () => events.closed(reason));
        const raw = (socket as unknown as { _socket?: net.Socket })._socket;
        resolve({
          send(frames) {
            // One write for the lot: ws corks per message, this corks around them all.
            raw?.cork();
            for (const frame of frames) socket.send(Buffer.from(frame, 'latin1'), { binary: true });
            raw?.uncork();
          },
          close: () => socket.terminate(),
        });
      });
    }),
);
