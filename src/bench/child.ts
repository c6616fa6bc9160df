/**
 * Entry point of the benchmark's child processes: `child.ts <role> <json payload>`, started by
 * spawn.ts. It answers over the IPC channel only ({type:'ready'} first, {type:'error'} when it
 * cannot), and exits when told to stop or when its parent goes away.
 */
import type { BenchOptions } from './types.ts';

type Message = { type: string; [key: string]: unknown };

function send(message: Message): void {
  process.send?.(message);
}

function fail(err: unknown): never {
  send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

/** Serve until asked to stop; answer CPU questions meanwhile. */
function serveUntilStopped(close: () => Promise<void>): void {
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await close().catch(() => undefined);
    process.exit(0);
  };
  process.on('message', (raw) => {
    const message = raw as Message;
    if (message.type === 'cpu') {
      const usage = process.cpuUsage();
      send({ type: 'cpu', micros: usage.user + usage.system });
    } else if (message.type === 'memory') {
      send({ type: 'memory', rss: process.memoryUsage().rss });
    } else if (message.type === 'stop') {
      void stop();
    }
  });
  process.on('disconnect', () => void stop());
}

async function main(): Promise<void> {
  const [role, json] = process.argv.slice(2);
  const payload = JSON.parse(json ?? '{}');
  switch (role) {
    case 'server': {
      const { startEchoServer, startHttpEchoServer, startRotorServer } = await import('./servers.ts');
      const server =
        payload.server === 'echo'
          ? await startEchoServer(payload.user)
          : payload.server === 'http-echo'
            ? await startHttpEchoServer(payload.user)
            : await startRotorServer(payload);
      send({ type: 'ready', port: server.port, httpPort: server.httpPort, label: server.label });
      serveUntilStopped(() => server.close());
      return;
    }
    case 'load': {
      const { runBench } = await import('./index.ts');
      send({ type: 'ready' });
      const result = await runBench(payload as BenchOptions);
      send({ type: 'result', result });
      break;
    }
    case 'memory': {
      const { probeMemory } = await import('./memory.ts');
      send({ type: 'ready' });
      send({ type: 'result', result: await probeMemory(payload) });
      break;
    }
    case 'redis-rotate': {
      const { redisRotate } = await import('./redis.ts');
      send({ type: 'ready' });
      const result = await redisRotate(payload);
      send({ type: 'result', result: { ...result, latency: result.latency.summary() } });
      break;
    }
    default:
      fail(`unknown role ${JSON.stringify(role)}`);
  }
  process.disconnect?.();
}

main().catch(fail);
