/**
 * What the Redis store needs for a Redis Cluster and for its safe mode: the hash slot of a key
 * (to find the master a write went to), the `redis-cluster://` URL, and WAIT after writes.
 *
 * The safe mode: Redis replicates asynchronously, so a write a master acknowledged may be lost
 * when it dies and its replica is promoted. `WAIT n timeout` blocks the calling connection until
 * n replicas have every write sent on that connection before it. WAIT has no key: it must go
 * on the very connection the write went on, to the master of the write's slot. ReplicaWaits does
 * that, and shares one WAIT among the writes that come back in the same turn of the event loop
 * (a group commit): a write's reply is in, then a WAIT is sent after it on the same socket, and
 * every write whose reply came in before is covered by it.
 */
import type { Redis } from 'ioredis';

export interface ClusterUrl {
  nodes: { host: string; port: number }[];
  username?: string | undefined;
  password?: string | undefined;
  tls: boolean;
}

/**
 * `redis-cluster://[user:password@]host:port,host:port,…` (`rediss-cluster://` for TLS): the
 * nodes to start from (one is enough; more survive one being down at start-up).
 */
export function parseClusterUrl(url: string): ClusterUrl {
  const match = /^(rediss?)-cluster:\/\/(?:([^@/]*)@)?([^/?#]+)\/?$/i.exec(url);
  if (!match) throw new Error(`not a redis-cluster URL: ${url.replace(/\/\/[^@/]*@/, '//***@')} (redis-cluster://host:port,host:port,…)`);
  const [, scheme, auth, hosts] = match;
  let username: string | undefined;
  let password: string | undefined;
  if (auth !== undefined) {
    const colon = auth.indexOf(':');
    username = decodeURIComponent(colon < 0 ? auth : auth.slice(0, colon)) || undefined;
    password = colon < 0 ? undefined : decodeURIComponent(auth.slice(colon + 1));
  }
  const nodes = hosts.split(',').map((hostPort) => {
    const at = hostPort.lastIndexOf(':');
    const host = (at < 0 ? hostPort : hostPort.slice(0, at)).replace(/^\[|\]$/g, '');
    const port = at < 0 ? 6379 : Number(hostPort.slice(at + 1));
    if (!host || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad node "${hostPort}" in a redis-cluster URL`);
    return { host, port };
  });
  return { nodes, username, password, tls: scheme.toLowerCase() === 'rediss' };
}

/** The store's own URL parameters, `?wait=<replicas>&waitTimeoutMs=<ms>`, taken off the URL (ioredis would read them as its options). */
export function takeWaitParams(url: string): { url: string; wait?: number; waitTimeoutMs?: number } {
  const q = url.indexOf('?');
  if (q < 0) return { url };
  const params = new URLSearchParams(url.slice(q + 1));
  const number = (name: string): number | undefined => {
    const raw = params.get(name);
    params.delete(name);
    if (raw === null) return undefined;
    const value = Number(raw);
    if (raw === '' || !Number.isInteger(value) || value < 0) throw new Error(`bad ${name}=${raw} in a Redis URL: a whole number >= 0`);
    return value;
  };
  const wait = number('wait');
  const waitTimeoutMs = number('waitTimeoutMs');
  const rest = params.toString();
  return { url: url.slice(0, q) + (rest ? `?${rest}` : ''), wait, waitTimeoutMs };
}

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/** The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag — the first non-empty `{…}` — or of the whole key, mod 16384. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(key)) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff];
  return crc & 16383;
}

interface Batch {
  readonly socket: unknown;
  readonly done: Promise<void>;
}

/**
 * WAIT after writes, one per connection and turn of the event loop. `after(node)` is called once
 * a write's reply came in on `node`'s connection; it resolves when `replicas` replicas have that
 * write, and rejects when they do not within `timeoutMs`, or when the connection the write went
 * on is gone (its write may be on no replica). The write itself stands either way.
 */
export class ReplicaWaits {
  private readonly next = new WeakMap<Redis, Batch>();

  constructor(
    readonly replicas: number,
    readonly timeoutMs: number,
  ) {}

  after(node: Redis | undefined): Promise<void> {
    if (!node) return Promise.reject(new Error('no connection to the master of the slot written'));
    const socket = node.stream;
    const pending = this.next.get(node);
    // Only a WAIT not yet sent is shared: sent after this write's reply, it comes after the write.
    if (pending && pending.socket === socket) return pending.done;
    const batch: Batch = {
      socket,
      done: new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        if (this.next.get(node) === batch) this.next.delete(node);
        if (node.stream !== socket || node.status !== 'ready') throw new Error('the connection a write went on closed before WAIT: it may be on no replica');
        const acked = Number(await node.call('WAIT', this.replicas, this.timeoutMs));
        if (acked < this.replicas) {
          throw new Error(`WAIT ${this.replicas}: ${acked} replica(s) had the write within ${this.timeoutMs} ms; it stands on the master but may be lost on a failover (the safe mode; ?wait=0 turns it off)`);
        }
      }),
    };
    batch.done.catch(() => {});
    this.next.set(node, batch);
    return batch.done;
  }
}
