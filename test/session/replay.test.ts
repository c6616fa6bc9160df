import t from 'tap';
import fc from 'fast-check';
import { replyAtRest, replyFromRest } from '../../src/session/replay.ts';
import { seededRandom } from '../../src/session/random.ts';
import { hashToken, KeyRing, mintToken } from '../../src/session/token.ts';
import { serializeFrame, type Header } from '../../src/wire/index.ts';

const keys = KeyRing.generate(seededRandom(1));
const random = seededRandom(2);
const token = () => mintToken(keys, { session: random(16).toString('base64url'), generation: 2, issued: 1_800_000_000, ttlMinutes: 60, user: 'alice' }, random);
const reply = (tok: string, headers: Header[], body?: Buffer) =>
  serializeFrame({ kind: 'response', status: 200, reason: 'OK', headers: [['Token', tok], ...headers], body });

t.test('a kept reply loses exactly its MAC and gets it back', async (t) => {
  const header = fc.tuple(fc.stringMatching(/^X-[A-Za-z]{1,8}$/), fc.stringMatching(/^[ -~]{0,20}$/).map((v) => v.trim()));
  fc.assert(
    fc.property(fc.uniqueArray(header, { selector: ([n]) => n.toLowerCase(), maxLength: 4 }), fc.option(fc.uint8Array({ maxLength: 64 })), (headers, body) => {
      const tok = token();
      const sent = reply(tok, headers, body === null ? undefined : Buffer.from(body));
      const kept = replyAtRest(sent);
      const mac = tok.slice(tok.lastIndexOf('.') + 1);
      return kept.length === sent.length - mac.length - 1 && !kept.includes(mac) && replyFromRest(keys, kept, hashToken(tok))!.equals(sent);
    }),
  );
  t.pass('property held');
});

t.test('a key retired since cannot re-make the token', async (t) => {
  const tok = token();
  const kept = replyAtRest(reply(tok, []));
  t.equal(replyFromRest(KeyRing.generate(seededRandom(9), 'k2'), kept, hashToken(tok)), undefined);
});

t.test('the server signs only the token the session expects: no signing oracle for whoever can write the store', async (t) => {
  const tok = token();
  const forged = mintToken(keys, { session: random(16).toString('base64url'), generation: 2, issued: 1_800_000_000, ttlMinutes: 52_560_000, user: 'admin' }, random);
  // A store writer swaps the claims in a kept reply for claims of its choosing.
  const tampered = replyAtRest(reply(forged, []));
  t.ok(replyFromRest(keys, tampered, hashToken(forged)), 'the forged claims would be signed if their hash were expected');
  t.equal(replyFromRest(keys, tampered, hashToken(tok)), undefined, 'but the session expects its own newest token: refused');
});

t.test('a reply without a leading Token header is a bug, not a silent copy', async (t) => {
  t.throws(() => replyAtRest(serializeFrame({ kind: 'response', status: 200, reason: 'OK', headers: [['X-A', 'b'], ['Token', token()]], body: undefined })));
  t.throws(() => replyAtRest(serializeFrame({ kind: 'response', status: 200, reason: 'OK', headers: [], body: undefined })));
});
