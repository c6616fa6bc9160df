/**
 * Spec §10 "Counters survive" on the durable default: rotor on LMDB in a child process
 * (test/crash/fixtures/node.ts), metered sessions making exchanges over TCP, and `kill -9`
 * in the middle of them, again and again. After each kill the session's counters in the store
 * hold exactly the bytes of every exchange whose reply the client got, plus — if the server
 * got as far as committing it — the one in flight, never part of it; the same frame sent again
 * after the restart gets the reply (its replay, when it was processed, counted as an exchange of its own); and the
 * session goes on with the newest token.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateKeys } from '../../src/cli/keys.ts';
import { issueLot, templateRecord } from '../../src/quotas/templates.ts';
import type { SessionQuota } from '../../src/quotas/types.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { verifyToken } from '../../src/session/token.ts';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { FrameParser, getHeader, serializeFrame, type ResponseFrame } from '../../src/wire/index.ts';
import { rawExchange, RotorNode, sleep } from '../crash/helpers.ts';

const KILLS = 5;
const CLIENTS = 6;
/** Traffic before each kill lasts this long, at random. */
const KILL_AFTER_MS: [number, number] = [150, 600];
/** Large enough never to refuse: this test is about counting, not about the cap. */
const CAP = 1_000_000_000;

const dir = mkdtempSync(join(tmpdir(), 'rotor-quota-kill-'));
const keyFile = join(dir, 'keys.json');
const dataDir = join(dir, 'data');
const keys = loadOrCreateKeys(keyFile, pooledRandom());
const node = new RotorNode('lmdb', { store: 'lmdb', dataDir, port: 0, keyFile, logFile: join(dir, 'tasks.log'), taskTimeoutMs: 1000 });
t.teardown(async () => {
  await node.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** The template and a lot of codes, written into the store before the server opens it. */
async function issueCodes(count: number): Promise<string[]> {
  const store = await LmdbStore.open(dataDir);
  try {
    const template = templateRecord('pass', { maxBytesTotal: CAP }, Date.now());
    if (!(await store.commitRecord('template', 'pass', template, 0))) throw new Error('the template exists');
    return (await issueLot(store, pooledRandom(), { id: 'kill', template, count, comment: '', issuer: 'test', owner: '', now: Date.now() })).codes;
  } finally {
    await store.close();
  }
}

/** The sessions' counters as the store holds them, read while the server is down. */
async function storedQuotas(sessions: readonly string[]): Promise<SessionQuota[]> {
  const store = await LmdbStore.open(dataDir);
  try {
    return await Promise.all(
      sessions.map(async (session) => {
        const state = await store.loadSession(session);
        if (!state?.quota) throw new Error(`session ${session} is not in the store, or not metered`);
        return state.quota;
      }),
    );
  } finally {
    await store.close();
  }
}

const parse = (bytes: Buffer): ResponseFrame => {
  const { frames, error } = new FrameParser().push(bytes);
  if (error || frames.length !== 1 || frames[0].kind !== 'response') throw new Error(`not one response frame: ${JSON.stringify(bytes.toString('latin1'))}`);
  return frames[0];
};

/** One request's bytes, as rotor counts it (a frame as written: `Name: value`). */
const requestBytes = (verb: string, path: string, token: string, pad: number, body?: Buffer): Buffer =>
  serializeFrame({ kind: 'request', verb, path, headers: [['Token', token], ['X-Pad', 'p'.repeat(pad)]], body });

/** A client of one code over TCP, a fresh connection per exchange: its newest token and what it got replies for. */
class MeteredClient {
  token = '';
  session = '';
  readonly counted = { bytesIn: 0, bytesOut: 0, exchanges: 0 };
  /** The request whose reply did not come: the server died. */
  pending: Buffer | undefined;
  private readonly random = pooledRandom();

  async login(code: string): Promise<void> {
    const reply = parse(await rawExchange(node.port, Buffer.from(`POST /rotor/login ROTOR/1\r\nCode: ${code}\r\n\r\n`, 'latin1')));
    const token = getHeader(reply, 'Token');
    if (!token || getHeader(reply, 'Quota-Template') !== 'pass') throw new Error(`login failed: ${reply.status} ${getHeader(reply, 'Error')}`);
    this.token = token;
    this.session = verifyToken(keys, token).session;
  }

  nextRequest(): Buffer {
    const [kind, pad] = this.random(2);
    return kind % 3 === 0 ? requestBytes('GET', '/read', this.token, pad) : requestBytes('POST', '/job', this.token, pad % 64, Buffer.from('{"ms":0}'));
  }

  /** The reply to `request` counted, its token the newest; anything but a rotating success throws. */
  accept(request: Buffer, reply: Buffer, what: string): void {
    const frame = parse(reply);
    const next = getHeader(frame, 'Token');
    if (!next || frame.status >= 400) throw new Error(`${what}: ${frame.status} ${getHeader(frame, 'Error')}`);
    this.counted.bytesIn += request.length;
    this.counted.bytesOut += reply.length;
    this.counted.exchanges++;
    this.token = next;
  }

  /** Exchanges one after another until one fails: the server is gone. */
  async traffic(): Promise<void> {
    for (;;) {
      const request = this.nextRequest();
      let reply: Buffer;
      try {
        reply = await rawExchange(node.port, request, 5_000);
      } catch {
        this.pending = request;
        return;
      }
      this.accept(request, reply, `exchange ${this.counted.exchanges + 1}`);
    }
  }
}

t.test(`kill -9 on LMDB, ${KILLS} times under ${CLIENTS} metered clients: only the exchange whose reply was not yet sent is lost, and never half of one`, async (t) => {
  const codes = await issueCodes(CLIENTS);
  await node.start();
  const clients = codes.map(() => new MeteredClient());
  await Promise.all(clients.map((client, i) => client.login(codes[i])));
  let committedInFlight = 0;
  let lostInFlight = 0;
  for (let kill = 1; kill <= KILLS; kill++) {
    const traffic = Promise.all(clients.map((client) => client.traffic()));
    await sleep(KILL_AFTER_MS[0] + Math.random() * (KILL_AFTER_MS[1] - KILL_AFTER_MS[0]));
    await node.kill();
    await traffic;
    const before = clients.map((client) => ({ ...client.counted }));
    const stored = await storedQuotas(clients.map((client) => client.session));
    await node.start();
    // The frame whose reply was lost, again with the same token: its replay if it was processed, else it is processed now.
    await Promise.all(clients.map(async (client, i) => client.accept(client.pending!, await rawExchange(node.port, client.pending!, 5_000), `kill ${kill}, client ${i}: the frame sent again`)));
    const problems = clients.flatMap((client, i) => {
      const was = before[i];
      const now = client.counted;
      const { bytesIn, bytesOut } = stored[i];
      if (bytesIn === was.bytesIn && bytesOut === was.bytesOut) {
        lostInFlight++;
        return [];
      }
      if (bytesIn === now.bytesIn && bytesOut === now.bytesOut) {
        // Processed before the kill: the frame sent again was its replay, which is counted too (spec §10) — the same bytes once more.
        committedInFlight++;
        client.counted.bytesIn += now.bytesIn - was.bytesIn;
        client.counted.bytesOut += now.bytesOut - was.bytesOut;
        return [];
      }
      return [`client ${i}: stored ${bytesIn} in / ${bytesOut} out; acknowledged ${was.bytesIn} / ${was.bytesOut} (${was.exchanges} exchanges); with the one in flight ${now.bytesIn} / ${now.bytesOut}`];
    });
    t.same(problems, [], `kill ${kill}: the store holds every acknowledged exchange, and the one in flight wholly or not at all`);
  }

  // Each session goes on with its newest token, and its counters are its client's, exactly.
  const problems = await Promise.all(
    clients.map(async (client, i) => {
      const status = requestBytes('GET', '/rotor/quota', client.token, 0);
      const reply = parse(await rawExchange(node.port, status));
      if (reply.status !== 200) return `client ${i}: ${reply.status} ${getHeader(reply, 'Error')}`;
      const used = JSON.parse(reply.body!.toString()).used;
      const want = [client.counted.bytesIn + status.length, client.counted.bytesOut];
      return used.bytesIn === want[0] && used.bytesOut === want[1] ? undefined : `client ${i}: GET /rotor/quota says ${used.bytesIn} / ${used.bytesOut}, the client counted ${want.join(' / ')}`;
    }),
  );
  t.same(problems.filter(Boolean), [], "after the last restart every newest token works, and GET /rotor/quota counts its client's exchanges, each once, and itself");
  const exchanges = clients.reduce((sum, client) => sum + client.counted.exchanges, 0);
  t.comment(`${KILLS} kills, ${exchanges} exchanges; in flight at a kill: ${committedInFlight} committed (reply lost, replayed), ${lostInFlight} not`);
  t.ok(committedInFlight + lostInFlight === KILLS * CLIENTS, 'every client had an exchange in flight at every kill');
});
