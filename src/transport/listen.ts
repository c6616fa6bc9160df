import type net from 'node:net';
import type { Logger } from '../log/index.ts';

/**
 * Bind a server with a listen(2) backlog (connection.listenBacklog; Linux caps it at
 * net.core.somaxconn) and resolve with its address; a bind error rejects, later errors are
 * logged. (Every listener uses it: TCP, TLS, HTTP.)
 */
export async function listenOn(server: net.Server, port: number, host: string, backlog: number, log: Logger, what: string): Promise<net.AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, `${what} listener error`));
  return server.address() as net.AddressInfo;
}
