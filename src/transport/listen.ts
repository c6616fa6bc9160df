import type net from 'node:net';
import type { Logger } from '../log/index.ts';

/**
 * Bind a server and resolve with its address; a bind error rejects, later errors are logged.
 * (Any listener can use it: TCP, HTTP.)
 */
export async function listenOn(server: net.Server, port: number, host: string, log: Logger, what: string): Promise<net.AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, `${what} listener error`));
  return server.address() as net.AddressInfo;
}
