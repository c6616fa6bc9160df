/**
 * Names and ids that would become store keys are bounded in the request: past LMDB's key size
 * they answered 503 ROTOR_E_UNAVAILABLE, which tells a client to retry forever.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { exampleApp } from '../../src/app/example.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { FrameParser, getHeader, type Header } from '../../src/wire/index.ts';

t.test('a long user name or task id is a bad request on LMDB, not an unavailable store', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-bounds-'));
  const store = await LmdbStore.open(dir);
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const config = resolveConfig({ auth: { scryptN: 1024 } });
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('pw', config.auth, seededRandom(1)), createdAt: 0 });
  const rotor = new Rotor({ config, store, app: exampleApp(), keys: KeyRing.generate(seededRandom(2)), log: silentLogger(), random: seededRandom(3) });
  const send = async (verb: string, path: string, headers: Header[]) => {
    const frame = new FrameParser().push((await rotor.dispatch({ kind: 'request', verb, path, headers, body: undefined })).bytes).frames[0];
    if (frame?.kind !== 'response') throw new Error('not a response');
    return { status: frame.status, error: getHeader(frame, 'Error'), token: getHeader(frame, 'Token') };
  };
  const atLimit = 'a'.repeat(config.auth.maxUserNameBytes);
  t.match(await send('POST', '/rotor/login', [['User', atLimit], ['Password', 'pw']]), { status: 401, error: 'ROTOR_E_AUTH_FAILED' }, 'a name at the limit is looked up');
  for (const user of ['a'.repeat(config.auth.maxUserNameBytes + 1), 'é'.repeat(129), 'u'.repeat(5000)]) {
    t.match(await send('POST', '/rotor/login', [['User', user], ['Password', 'pw']]), { status: 400, error: 'ROTOR_E_BAD_REQUEST' }, `a ${Buffer.byteLength(user)}-byte name`);
  }
  const token = (await send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']])).token!;
  for (const id of ['t'.repeat(65), 't'.repeat(4000), 'a.b', '%2e%2e']) {
    t.match(await send('GET', `/rotor/tasks/${id}`, [['Token', token]]), { status: 400, error: 'ROTOR_E_BAD_REQUEST', token: undefined }, `task id of ${id.length} characters: refused before admission`);
  }
  t.match(await send('GET', `/rotor/tasks/${'t'.repeat(64)}`, [['Token', token]]), { status: 404, error: 'ROTOR_E_TASK_UNKNOWN' }, 'an id at the limit is looked up');
});
