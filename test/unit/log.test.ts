import t from 'tap';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log/index.ts';

t.test('tokens, passwords and TOTP codes never reach a log line', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const log = createLogger({ level: 'info', destination: sink });
  log.info({ token: 'k1.SECRET-TOKEN.mac', password: 'hunter2', totp: '123456', user: 'alice' }, 'login');
  log.info({ req: { token: 'k1.NESTED.mac', password: 'nested-pw' }, headers: { Token: 'k1.HEADER.mac', Password: 'hp' } }, 'nested');
  log.flush();
  await new Promise((resolve) => setImmediate(resolve));
  const text = lines.join('');
  t.equal(lines.length, 2, 'both lines written');
  for (const secret of ['SECRET-TOKEN', 'hunter2', '123456', 'NESTED', 'nested-pw', 'HEADER', '"hp"']) {
    t.notMatch(text, secret, `${secret} is redacted`);
  }
  t.match(text, '"user":"alice"', 'other fields stay');
  t.match(text, '[redacted]', 'the censor marks what was removed');
});
