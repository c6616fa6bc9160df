import type tls from 'node:tls';
import WebSocket, { createWebSocketStream } from 'ws';
import { DEFAULTS, type WireLimits } from '../config/settings.ts';
import { asTransportError, TransportError } from './errors.ts';
import { StreamTransport, type Connect } from './transport.ts';

export interface WsOptions {
  /** For wss: URLs: `ca` for a private certificate (`rejectUnauthorized: false` only in tests). */
  tls?: Pick<tls.ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'servername'> | undefined;
  /** Connect (handshake) and per-request timeout. */
  timeoutMs?: number | undefined;
  limits?: WireLimits | undefined;
}

/**
 * rotor over WebSocket (`ws://host:port/rotor/ws`, `wss://…`): each request frame is sent as one
 * binary message and each reply arrives as one. The messages are read as a byte stream by the
 * same pipelined transport TCP uses, so replies are matched to requests by order.
 */
export function wsConnect(url: string | URL, options: WsOptions = {}): Connect {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const limits = options.limits ?? DEFAULTS.wire;
  return () =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: limits.maxHeaderBytes + limits.maxBodyBytes,
        handshakeTimeout: timeoutMs,
        ...options.tls,
      });
      const fail = (err: Error) => {
        socket.terminate();
        reject(asTransportError(err));
      };
      socket.once('error', fail);
      socket.once('unexpected-response', (_request, response) => fail(new TransportError(`WebSocket upgrade refused: HTTP ${response.statusCode} ${response.headers.error ?? ''}`.trim())));
      socket.once('open', () => {
        socket.off('error', fail);
        resolve(new StreamTransport(createWebSocketStream(socket), timeoutMs, limits));
      });
    });
}
