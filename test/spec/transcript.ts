/**
 * Produces spec.md's example exchanges from a real, deterministic rotor (seeded randomness,
 * a fixed clock, a fixed key). test/spec/spec.test.ts checks that spec.md shows exactly these
 * bytes; after a deliberate change, print the new transcript with
 *   npx tsx test/spec/transcript.ts
 * and paste each block into spec.md.
 */
import { pathToFileURL } from 'node:url';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { exampleApp } from '../../src/app/example.ts';
import { FrameParser, getHeader, serializeFrame, type Frame, type Header } from '../../src/wire/index.ts';
import net from 'node:net';
import { listenHttp } from '../../src/transport/http.ts';
import { TokenApi } from '../../src/transport/rest.ts';
import { issueLot, templateRecord } from '../../src/quotas/templates.ts';
import { addApp } from '../../src/seal/apps.ts';
import { startOpen } from '../../src/seal/instance.ts';
import { sealProof } from '../../src/seal/proof.ts';

export interface Exchange {
  title: string;
  request: Buffer;
  response: Buffer;
}

/** 2026-11-24T10:00:00Z */
export const SPEC_CLOCK = Date.UTC(2026, 10, 24, 10, 0, 0);

function request(verb: string, path: string, headers: Header[], body?: string): Buffer {
  return serializeFrame({ kind: 'request', verb, path, headers, body: body === undefined ? undefined : Buffer.from(body) });
}

function parseOne(bytes: Buffer): Frame {
  const { frames, error } = new FrameParser().push(bytes);
  if (error || frames.length !== 1) throw new Error(`not one frame: ${bytes.toString()}`);
  return frames[0];
}

/** The rotor every example runs against: seeded randomness, a stopped clock, a fixed key. */
async function specRotor(): Promise<{ rotor: Rotor; store: MemoryStore }> {
  const config = resolveConfig({ auth: { scryptN: 1024 }, session: { openTokenCreate: true } });
  const store = new MemoryStore();
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('wonderland', config.auth, seededRandom(7)), createdAt: 0 });
  const random = seededRandom(2026);
  const keys = new KeyRing([{ id: 'k1', secret: Buffer.alloc(32, 7) }]);
  const rotor = new Rotor({ config, store, app: exampleApp(), keys, log: silentLogger(), now: () => SPEC_CLOCK, random, nodeId: 'spec' });
  rotor.start();
  return { rotor, store };
}

export async function transcript(): Promise<Exchange[]> {
  const { rotor, store } = await specRotor();
  const out: Exchange[] = [];
  const send = async (title: string, bytes: Buffer): Promise<Frame> => {
    const reply = await rotor.dispatch(parseOne(bytes));
    out.push({ title, request: bytes, response: reply.bytes });
    return parseOne(reply.bytes);
  };
  const token = (frame: Frame) => getHeader(frame, 'Token')!;

  await send('ping', request('GET', '/rotor/ping', []));
  const login = await send('login', request('POST', '/rotor/login', [['User', 'alice'], ['Password', 'wonderland']]));
  const t1 = token(login);
  const hello = await send('read', request('GET', '/hello', [['Token', t1]]));
  const t2 = token(hello);
  const work = await send('work', request('POST', '/reverse', [['Token', t2]], 'stressed'));
  const t3 = token(work);
  const taskId = getHeader(work, 'Task')!;
  await send('replay', request('POST', '/reverse', [['Token', t2]], 'stressed'));
  await send('ack', request('POST', '/rotor/ack', [['Token', t3]]));
  await rotor.tasks.idle();
  const result = await send('task', request('GET', `/rotor/tasks/${taskId}`, [['Token', t3]]));
  const t4 = token(result);
  const meta = await send('meta', request('PUT', '/rotor/token', [['Token', t4], ['Content-Type', 'application/json']], '{"theme":"dark"}'));
  const t5 = token(meta);
  await send('reuse', request('GET', '/hello', [['Token', t3]]));
  await send('revoked', request('GET', '/hello', [['Token', t5]]));
  const second = await send('login2', request('POST', '/rotor/login', [['User', 'alice'], ['Password', 'wonderland']]));
  await send('logout', request('POST', '/rotor/logout', [['Token', token(second)]]));
  const created = await send('create', request('POST', '/rotor/token', [['Content-Type', 'application/json']], '{"name":"My user","year":2022}'));
  await send('delete', request('DELETE', '/rotor/token', [['Token', token(created)]]));
  await send('wrong-password', request('POST', '/rotor/login', [['User', 'alice'], ['Password', 'guess']]));

  // Seats (spec §9): two sessions of alice's, a pool of one seat.
  await store.putPool({ name: 'cad', seats: 1, perUser: 0, heartbeatMs: 300_000, maxHoldMs: null, queueLimit: 100, perUserQueueLimit: 10, createdAt: SPEC_CLOCK });
  const quietLogin = async () => token(parseOne((await rotor.dispatch(parseOne(request('POST', '/rotor/login', [['User', 'alice'], ['Password', 'wonderland']])))).bytes));
  const [first, waiting] = [await quietLogin(), await quietLogin()];
  const taken = await send('seat-take', request('POST', '/rotor/seats/cad', [['Token', first]]));
  const queued = await send('seat-queued', request('POST', '/rotor/seats/cad', [['Token', waiting]]));
  const standing = await send('seat-look', request('GET', '/rotor/seats/cad', [['Token', token(queued)]]));
  await send('seat-give', request('DELETE', '/rotor/seats/cad', [['Token', token(taken)]]));
  await send('seat-granted', request('POST', '/rotor/seats/cad', [['Token', token(standing)]]));

  // Access codes (spec §10): a template of 2,000 bytes in all, one code of a lot.
  const dayPass = templateRecord('day-pass', { maxBytesTotal: 2_000 }, SPEC_CLOCK);
  await store.commitRecord('template', dayPass.name, dayPass, 0);
  const { codes } = await issueLot(store, seededRandom(2002), { id: 'front-desk', template: dayPass, count: 1, comment: 'lobby', issuer: 'ops', owner: '', now: SPEC_CLOCK });
  const codeLogin = await send('code-login', request('POST', '/rotor/login', [['Code', codes[0]]]));
  const status = await send('quota-status', request('GET', '/rotor/quota', [['Token', token(codeLogin)]]));
  let spending = token(status);
  for (;;) {
    const bytes = request('POST', '/reverse', [['Token', spending]], 'stressed');
    const reply = parseOne((await rotor.dispatch(parseOne(bytes))).bytes);
    if (getHeader(reply, 'Error')) break;
    spending = token(reply);
    // The next one would pass the cap: show it.
    const next = getHeader(reply, 'Token')!;
    const probe = await store.loadSession((await store.listRecords<{ session: string | null }>('code'))[0].value.session ?? '');
    if (probe?.quota && probe.quota.bytesIn + probe.quota.bytesOut + 250 > 2_000) {
      await send('quota-exceeded', request('POST', '/reverse', [['Token', next]], 'stressed'));
      break;
    }
  }
  await send('code-spent', request('POST', '/rotor/login', [['Code', codes[0]]]));

  // Sealed sessions (spec §12): an app made with seeded randomness, an instance key pair of fixed bytes.
  const billing = await addApp(store, 'billing', 'open', SPEC_CLOCK, seededRandom(3003));
  const openNonce = getHeader(await send('seal-nonce', request('GET', '/rotor/seal', [])), 'Seal-Nonce')!;
  const pending = startOpen({ app: billing.id, instance: 'build-7.example.net', key: billing.key }, openNonce, Buffer.alloc(32, 2));
  const opened = await send('seal-open', request('POST', '/rotor/seal', pending.headers));
  const sessionKey = pending.sessionKey(getHeader(opened, 'Seal-Key')!)!;
  const sealed = (verb: string, path: string, frame: Frame, body?: string, signedBody = body): Buffer =>
    request(verb, path, [['Token', token(frame)], ['Seal-Proof', sealProof(sessionKey, getHeader(frame, 'Seal-Nonce')!, verb, path, signedBody === undefined ? undefined : Buffer.from(signedBody))]], body);
  await send('seal-confirm', sealed('POST', '/rotor/ack', opened));
  const sealedRead = await send('sealed-read', sealed('GET', '/hello', opened));
  await send('seal-proof-missing', request('GET', '/hello', [['Token', token(sealedRead)]]));
  await send('seal-body-changed', sealed('POST', '/reverse', sealedRead, 'desserts', 'stressed'));
  const sealedWork = sealed('POST', '/reverse', sealedRead, 'stressed');
  const worked = await send('sealed-work', sealedWork);
  const afterWork = await send('sealed-next', sealed('GET', '/hello', worked));
  await send('seal-replayed', sealedWork);
  await send('seal-nonce-wrong', request('GET', '/hello', [['Token', token(afterWork)], ['Seal-Proof', sealProof(sessionKey, getHeader(worked, 'Seal-Nonce')!, 'GET', '/hello', undefined)]]));
  await rotor.stop();
  return out;
}

/**
 * The HTTP examples: raw HTTP/1.1 requests on one keep-alive connection to the HTTP listener
 * (rotor over HTTP, the POST fallback, the HTML envelope, note 004's token API).
 * `build` gets the previous responses so a request can carry the token one of them gave.
 */
export async function httpTranscript(): Promise<Exchange[]> {
  const { rotor, store } = await specRotor();
  const listener = await listenHttp(rotor, rotor.config, silentLogger(), {
    host: '127.0.0.1',
    port: 0,
    tokenApi: new TokenApi(rotor, store, silentLogger(), { dump: false, now: () => SPEC_CLOCK }),
  });
  const socket = net.connect(listener.address.port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const out: Exchange[] = [];
  let pending = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  socket.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    wake?.();
  });
  const readResponse = async (): Promise<Buffer> => {
    for (;;) {
      const end = pending.indexOf('\r\n\r\n');
      if (end !== -1) {
        const length = Number(/content-length: (\d+)/i.exec(pending.subarray(0, end).toString('latin1'))?.[1] ?? 0);
        if (pending.length >= end + 4 + length) {
          const response = pending.subarray(0, end + 4 + length);
          pending = pending.subarray(end + 4 + length);
          return response;
        }
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
  const send = async (title: string, head: string, body = ''): Promise<string> => {
    const lines = head.split('\n');
    if (body) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
    const request = Buffer.from(lines.join('\r\n') + '\r\n\r\n' + body);
    socket.write(request);
    const response = await readResponse();
    out.push({ title, request, response });
    return response.toString('utf8');
  };
  const tokenOf = (text: string) => /\r\nToken: ([^\r]+)/.exec(text)![1];
  try {
    const login = await send('http-login', 'POST /rotor/login HTTP/1.1\nHost: rotor.example\nUser: alice\nPassword: wonderland');
    const hello = await send('http-read', `GET /hello HTTP/1.1\nHost: rotor.example\nToken: ${tokenOf(login)}`);
    const viaPost = await send('http-post-only', `POST /hello HTTP/1.1\nHost: rotor.example\nX-Rotor-Verb: GET\nToken: ${tokenOf(hello)}`);
    await send('http-html', `GET /hello HTTP/1.1\nHost: rotor.example\nAccept: text/html\nToken: ${tokenOf(viaPost)}`);
    const created = await send('rest-create', 'POST /token HTTP/1.1\nHost: rotor.example\nContent-Type: application/json', '{"meta":{"name":"My user","year":2022}}');
    const token = created.slice(created.indexOf('\r\n\r\n') + 4);
    await send('rest-exchange', 'PUT /token HTTP/1.1\nHost: rotor.example\nContent-Type: application/json', JSON.stringify({ token, meta: { period: 11 } }));
    await send('rest-reuse', 'PUT /token HTTP/1.1\nHost: rotor.example\nContent-Type: application/json', JSON.stringify({ token: tokenOf(hello) }));
  } finally {
    socket.destroy();
    await listener.close();
    await rotor.stop();
  }
  return out;
}

/** How spec.md shows an HTTP message: CRLF shown as line breaks. */
export function showHttp(bytes: Buffer): string {
  return bytes.toString('utf8').replace(/\r\n/g, '\n').replace(/\n$/, '');
}

/** How spec.md shows a frame: its bytes with CRLF shown as line breaks, no trailing blank line. */
export function showFrame(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  const split = text.indexOf('\r\n\r\n');
  const head = text.slice(0, split).replace(/\r\n/g, '\n');
  const body = text.slice(split + 4);
  return body.length > 0 ? `${head}\n\n${body}` : head;
}

/** The inverse of showFrame: spec.md's text back to wire bytes. */
export function wireBytes(shown: string): Buffer {
  const split = shown.indexOf('\n\n');
  const head = split === -1 ? shown : shown.slice(0, split);
  const body = split === -1 ? '' : shown.slice(split + 2);
  return Buffer.from(head.replace(/\n/g, '\r\n') + '\r\n\r\n' + body);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const exchange of await transcript()) {
    console.log(`<!-- ${exchange.title} -->\n\`\`\`rotor\n${showFrame(exchange.request)}\n\`\`\`\n\`\`\`rotor\n${showFrame(exchange.response)}\n\`\`\`\n`);
  }
  for (const exchange of await httpTranscript()) {
    console.log(`<!-- ${exchange.title} -->\n\`\`\`http\n${showHttp(exchange.request)}\n\`\`\`\n\`\`\`http\n${showHttp(exchange.response)}\n\`\`\`\n`);
  }
}
