/**
 * What an idle session costs in memory: RSS after minus RSS before, over the session count,
 * in a process of its own started with --expose-gc (so nothing else lives in its heap).
 */
import { rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBenchStore, preloadSessions } from './servers.ts';
import { DEFAULTS } from '../config/defaults.ts';
import { pooledRandom } from '../session/random.ts';
import { rotate } from '../session/machine.ts';
import type { Store } from '../store/types.ts';

export interface MemoryProbeOptions {
  store: string;
  count: number;
  /**
   * `login`: sessions as a login leaves them. `rotated`: after one exchange, holding the
   * reply copy (≈ 150 B) a session keeps until its next token is used.
   */
  variant: 'login' | 'rotated';
}

export interface MemoryProbeResult {
  count: number;
  rssBytesPerSession: number;
  heapBytesPerSession: number;
  rssDeltaBytes: number;
}

function settle(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('the memory probe needs node --expose-gc');
  for (let i = 0; i < 4; i++) gc();
}

export async function probeMemory(options: MemoryProbeOptions): Promise<MemoryProbeResult> {
  const dir = options.store === 'memory' ? '' : mkdtempSync(join(tmpdir(), 'rotor-mem-'));
  const store = await openBenchStore(options.store, dir);
  try {
    settle();
    const before = process.memoryUsage();
    let ids: string[] | undefined = await preloadSessions(store, options.count, 'bench', options.variant === 'rotated');
    if (options.variant === 'rotated') await rotateAll(store, ids);
    ids = undefined;
    settle();
    const after = process.memoryUsage();
    const rssDelta = after.rss - before.rss;
    return {
      count: options.count,
      rssDeltaBytes: rssDelta,
      rssBytesPerSession: rssDelta / options.count,
      heapBytesPerSession: (after.heapUsed + after.external + after.arrayBuffers - before.heapUsed - before.external - before.arrayBuffers) / options.count,
    };
  } finally {
    await store.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** Give every session one exchange, as if each client had made one request and gone idle. */
async function rotateAll(store: Store, ids: readonly string[]): Promise<void> {
  const random = pooledRandom();
  const now = Date.now();
  const replyText = `ROTOR/1 200 OK\r\nToken: ${'t'.repeat(96)}\r\nContent-Type: text/plain; charset=utf-8\r\nBIN-Length: 12\r\n\r\nhello, bench`;
  const window = store.kind === 'memory' ? 1 : 2_000;
  for (let at = 0; at < ids.length; at += window) {
    await Promise.all(
      ids.slice(at, at + window).map(async (id) => {
        const state = (await store.loadSession(id))!;
        const next = rotate({ ...state, acked: true }, {
          nextHash: random(16).toString('base64url'),
          nextExpiresAt: now + DEFAULTS.session.tokenTtlMinutes * 60_000,
          reply: Buffer.from(replyText),
          tasks: [],
          meta: state.meta,
        });
        await store.commitSession(next, state.rev, []);
      }),
    );
  }
}
