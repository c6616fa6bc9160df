/**
 * Produces spec.md's example exchanges from a real, deterministic rotor (seeded randomness,
 * a fixed clock, a fixed key). test/spec/spec.test.ts checks that spec.md shows exactly these
 * bytes; after a deliberate change, print the new transcript with
 *   npx tsx test/spec/transcript.ts
 * and paste each block into spec.md.
 */
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { exampleApp } from '../../src/app/example.ts';
import { FrameParser, getHeader, serializeFrame, type Frame, type Header } from '../../src/wire/index.ts';

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

export async function transcript(): Promise<Exchange[]> {
  const config = resolveConfig({ auth: { scryptN: 1024 }, session: { openTokenCreate: true } });
  const store = new MemoryStore();
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('wonderland', config.auth, seededRandom(7)), createdAt: 0 });
  const random = seededRandom(2026);
  const keys = new KeyRing([{ id: 'k1', secret: Buffer.alloc(32, 7) }]);
  const now = SPEC_CLOCK;
  const rotor = new Rotor({ config, store, app: exampleApp(), keys, log: silentLogger(), now: () => now, random, nodeId: 'spec' });
  rotor.start();
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
  await rotor.stop();
  return out;
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

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const exchange of await transcript()) {
    console.log(`<!-- ${exchange.title} -->\n\`\`\`rotor\n${showFrame(exchange.request)}\n\`\`\`\n\`\`\`rotor\n${showFrame(exchange.response)}\n\`\`\`\n`);
  }
}
