import net from 'node:net';

/**
 * The benchmark is a load generator: it may only ever aim at this machine. A host counts as
 * loopback when it is `localhost`, an address in 127.0.0.0/8, `::1`, or `::ffff:127.x.y.z`.
 * Names other than `localhost` are refused rather than resolved (DNS could say anything).
 */
export function isLoopback(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare.toLowerCase() === 'localhost') return true;
  if (net.isIPv4(bare)) return bare.split('.')[0] === '127';
  if (net.isIPv6(bare)) {
    const lower = bare.toLowerCase();
    if (lower === '::1' || lower === '0:0:0:0:0:0:0:1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
    return mapped !== null && net.isIPv4(mapped[1]) && mapped[1].split('.')[0] === '127';
  }
  return false;
}

export function assertLoopback(host: string): void {
  if (!isLoopback(host)) throw new RangeError(`refusing to load ${JSON.stringify(host)}: the benchmark only targets loopback (127.0.0.0/8, ::1, localhost)`);
}
