/**
 * The store half of a rotation, as the server does it: load a session, store its next state
 * (a new token hash and a ~300-byte reply) with commitSession. Shared by bench/store-*.ts.
 */
import { randomBytes } from 'node:crypto';
import type { SessionState } from '../src/session/types.ts';
import type { Store } from '../src/store/types.ts';

export interface RotationResult {
  inFlight: number;
  rotations: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  conflicts: number;
}

/** Create `count` sessions, `batch` at a time; returns their ids and sessions/s. */
export async function createSessions(store: Store, count: number, batch = 1000): Promise<{ ids: string[]; perSecond: number }> {
  const ids = Array.from({ length: count }, (_, i) => `bench-${i}-${randomBytes(6).toString('hex')}`);
  const started = performance.now();
  for (let i = 0; i < count; i += batch) {
    await Promise.all(
      ids.slice(i, i + batch).map((id) =>
        store.createSession({
          id, user: 'bench', rev: 0, gen: 1, tokenHash: id.slice(-22), acked: true, prev: null,
          held: [], meta: { plan: 'pro', seat: i }, createdAt: Date.now(), expiresAt: Date.now() + 7_200_000, revoked: null, quota: null, seal: null,
        }),
      ),
    );
  }
  return { ids, perSecond: count / ((performance.now() - started) / 1000) };
}

/** `inFlight` loops rotate disjoint sessions (no two on one session) for `seconds`. */
export async function rotate(store: Store, ids: string[], inFlight: number, seconds: number): Promise<RotationResult> {
  const reply = randomBytes(300);
  const latencies: number[] = [];
  let conflicts = 0;
  const deadline = performance.now() + seconds * 1000;
  const loop = async (lane: number) => {
    for (let i = lane; performance.now() < deadline; i += inFlight) {
      const id = ids[i % ids.length];
      const t0 = performance.now();
      const state = (await store.loadSession(id)) as SessionState;
      // A stand-in for the 22-character token hash (randomBytes here would cost more than the store).
      const tokenHash = `${lane.toString(36).padStart(8, '0')}.${state.gen.toString(36).padStart(13, '0')}`;
      const next: SessionState = { ...state, gen: state.gen + 1, tokenHash, acked: false, prev: { hash: state.tokenHash, reply }, expiresAt: Date.now() + 7_200_000 };
      if (await store.commitSession(next, state.rev, [])) latencies.push(performance.now() - t0);
      else conflicts++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, (_, lane) => loop(lane)));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { inFlight, rotations: latencies.length, perSecond: latencies.length / elapsed, p50Ms: at(0.5), p99Ms: at(0.99), conflicts };
}

export function formatRotation(label: string, r: RotationResult): string {
  return `${label.padEnd(22)} in flight ${String(r.inFlight).padStart(5)}: ${Math.round(r.perSecond).toLocaleString('en').padStart(8)} rotations/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms${r.conflicts ? `  conflicts ${r.conflicts}` : ''}`;
}
