import t from 'tap';
import { carriers, startServer } from './helpers.ts';
import { runScenarios } from './scenarios.ts';

// TLS, HTTPS and WSS with a certificate made for this run: the same scenarios, the same codes.
const server = await startServer({ tls: true });
t.teardown(() => server.close());
const list = carriers(server);
list.forEach((carrier, i) => runScenarios(t, carrier, list[(i + 1) % list.length]));
