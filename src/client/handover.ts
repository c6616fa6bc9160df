/**
 * Following hand-overs (spec §11): a reply that sends the client on to a peer carries the peer's
 * address and a token for one login there. `HandOvers` holds one RotorClient per peer address —
 * one rotating session per server — and logs it in with the hand-over the first time (or again
 * once its session has ended); the home client goes on rotating its own session as before.
 */
import { RotorClient, type ClientOptions, type HandOverTarget, type RotorResponse } from './client.ts';
import { httpConnect } from './http.ts';
import { tcpConnect, type Connect } from './transport.ts';
import { wsConnect } from './ws.ts';

export interface HandOversOptions {
  /** The home server's name (its `self` in the peers file): the `Home` of every hand-over login. */
  home: string;
  /** A connection to the peer at `address` (an `Out-of-band` value). Default: connectByAddress. */
  connectTo?: ((address: string) => Connect) | undefined;
  /** Options of each peer's RotorClient (its retries, its onToken). */
  client?: Omit<ClientOptions, 'connect'> | undefined;
}

/** A connection for an `Out-of-band` address: `tcp://host:port`, `tls://host:port`, `http(s)://…`, `ws(s)://…`. */
export function connectByAddress(address: string): Connect {
  const url = new URL(address);
  switch (url.protocol) {
    case 'tcp:':
    case 'tls:':
      return tcpConnect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port), tls: url.protocol === 'tls:' ? { servername: url.hostname } : undefined });
    case 'http:':
    case 'https:':
      return httpConnect(url);
    case 'ws:':
    case 'wss:':
      return wsConnect(url);
    default:
      throw new TypeError(`a hand-over to ${address}: no carrier for ${url.protocol}`);
  }
}

export class HandOvers {
  private readonly clients = new Map<string, RotorClient>();
  private readonly connectTo: (address: string) => Connect;

  constructor(private readonly options: HandOversOptions) {
    this.connectTo = options.connectTo ?? connectByAddress;
  }

  /**
   * The client of the peer `reply` hands over to, logged in there: with the reply's hand-over
   * token unless it holds a session there already. Rejects for a reply that hands over nowhere,
   * or with the peer's refusal (RotorClientError: ROTOR_E_HANDOVER_…).
   */
  async follow(reply: RotorResponse | HandOverTarget): Promise<RotorClient> {
    const target = 'status' in reply ? reply.handOver : reply;
    if (!target) throw new TypeError('this reply hands over to no peer');
    let client = this.clients.get(target.address);
    if (!client) {
      client = new RotorClient({ ...this.options.client, connect: this.connectTo(target.address) });
      this.clients.set(target.address, client);
    }
    if (client.token === undefined) await client.loginWithHandOver(target.token, this.options.home);
    return client;
  }

  /** The client of the peer at `address`, if one was followed. */
  at(address: string): RotorClient | undefined {
    return this.clients.get(address);
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
