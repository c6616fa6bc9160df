/**
 * Where a frame came from, as the carriers tell the dispatcher, and what counts as one source
 * address: shared by the transport (connection caps) and the dispatcher (login throttling,
 * client binding), so neither reaches into the other for it.
 */
import { isIPv6 } from 'node:net';

/** How a frame reached rotor. An HTTP connection upgraded to WebSocket is `ws` from then on. */
export type Carrier = 'tcp' | 'tls' | 'http' | 'ws';

/** Where a frame came from (the access log and the security events say it). */
export interface Origin {
  readonly carrier: Carrier;
  /** The peer's address as the socket reports it. */
  readonly peer: string | undefined;
}

/**
 * What counts as one source: an IPv4 address (also when it arrives IPv4-mapped, `::ffff:a.b.c.d`),
 * or the /64 of an IPv6 address — one host is usually given a whole /64 and may use any address in it.
 */
export function addressKey(address: string | undefined): string {
  if (address === undefined) return '';
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!isIPv6(address)) return address;
  const [head, tail = ''] = address.split('%')[0].split('::');
  const front = head === '' ? [] : head.split(':');
  const back = address.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return `${groups.slice(0, 4).map((g) => Number.parseInt(g, 16).toString(16)).join(':')}::/64`;
}
