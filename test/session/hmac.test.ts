/**
 * The token MAC is HMAC-SHA256 made by hand from two one-shot SHA-256 calls (session/token.ts),
 * so it is checked against the published vectors of RFC 4231 — not only against rotor's own
 * mint — and against node:crypto's createHmac for any key and message.
 */
import t from 'tap';
import fc from 'fast-check';
import { createHmac } from 'node:crypto';
import { mac } from '../../src/session/token.ts';

/** RFC 4231 §4: key, data, and the first 128 bits of HMAC-SHA-256 (test case 5 is itself truncated to 128). Cases 3 and 4 use binary data, which a token's text never is. */
const VECTORS: Array<[string, Buffer, string, string]> = [
  ['4.2 test case 1', Buffer.alloc(20, 0x0b), 'Hi There', 'b0344c61d8db38535ca8afceaf0bf12b'],
  ['4.3 test case 2', Buffer.from('Jefe'), 'what do ya want for nothing?', '5bdcc146bf60754e6a042426089575c7'],
  ['4.6 test case 5', Buffer.alloc(20, 0x0c), 'Test With Truncation', 'a3b6167473100ee06e0c796c2955552b'],
  ['4.7 test case 6 (key longer than a block)', Buffer.alloc(131, 0xaa), 'Test Using Larger Than Block-Size Key - Hash Key First', '60e431591ee0b67f0d8a26aacbf5b77f'],
  [
    '4.8 test case 7 (key and data longer than a block)',
    Buffer.alloc(131, 0xaa),
    'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.',
    '9b09ffa71b942fcb27635fbcd5b0e944',
  ],
];

t.test('RFC 4231 vectors', async (t) => {
  for (const [name, key, data, expected] of VECTORS) {
    t.equal(Buffer.from(mac(key, data), 'base64url').toString('hex'), expected, name);
  }
});

t.test('the same bytes as createHmac for any key and text', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.string({ maxLength: 1500, unit: 'grapheme' }), (key, text) => {
      const secret = Buffer.from(key);
      return mac(secret, text) === createHmac('sha256', secret).update(text).digest().subarray(0, 16).toString('base64url');
    }),
    { numRuns: 500 },
  );
  t.pass('property held');
});
