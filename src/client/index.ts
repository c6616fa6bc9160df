/** rotor's client library: one class, transports per carrier, typed errors. */
export { RotorClient, type RotorResponse, type ClientOptions, type RequestOptions, type OpenSealedOptions, type HandOverTarget } from './client.ts';
export type { AppIdentity } from '../seal/instance.ts';
export { HandOvers, connectByAddress, type HandOversOptions } from './handover.ts';
export { tcpConnect, StreamTransport, type ClientTransport, type Connect, type TcpOptions } from './transport.ts';
export { httpConnect, type HttpOptions } from './http.ts';
export { wsConnect, type WsOptions } from './ws.ts';
export { parseEnvelope, EnvelopeError } from './html.ts';
export {
  RotorClientError,
  TokenReusedError,
  TokenExpiredError,
  SessionRevokedError,
  AuthFailedError,
  TransportError,
  TlsCertificateError,
} from './errors.ts';
