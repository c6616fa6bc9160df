import t from 'tap';
import { carriers, startServer } from './helpers.ts';
import { runScenarios } from './scenarios.ts';

// TCP, HTTP and WebSocket, each run through the same scenarios; each one's bad input is checked
// against a live session on the next.
const server = await startServer();
t.teardown(() => server.close());
const list = carriers(server);
list.forEach((carrier, i) => runScenarios(t, carrier, list[(i + 1) % list.length]));
