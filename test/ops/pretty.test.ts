import t from 'tap';
import { Writable } from 'node:stream';
import { createLogger, LOG_LEVELS, LogLevelError, type PrettyLogs } from '../../src/log/index.ts';
import { serve } from '../../src/server/index.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { testApp, TEST_CONFIG } from '../carriers/helpers.ts';

/** What a logger with `pretty` writes for one info line and one warn line, into a destination that is (or is not) a terminal. */
function written(pretty: PrettyLogs, terminal = false): string[] {
  const chunks: string[] = [];
  const destination = Object.assign(
    new Writable({
      write(chunk, _encoding, done) {
        chunks.push(String(chunk));
        done();
      },
    }),
    { isTTY: terminal },
  );
  // Writable.write is synchronous up to the callback: the chunks are there when write returns.
  const log = createLogger({ level: 'info', destination, pretty });
  log.info({ op: 'login', status: 200 }, 'exchange');
  log.warn({ event: 'login_failed', user: 'mallory' }, 'security: login failed');
  return chunks.join('').split('\n').filter((line) => line !== '');
}

const isJson = (line: string) => {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
};

t.test("'always' writes human lines, 'never' JSON lines", async (t) => {
  const pretty = written('always');
  t.ok(pretty.length >= 2, 'something was written');
  t.notOk(pretty.some(isJson), 'no line is JSON');
  t.match(pretty[0], /INFO.*exchange/, 'level label and message on one line');
  t.ok(pretty.some((line) => /WARN.*security: login failed/.test(line)), 'the warn line too');
  t.ok(pretty.some((line) => /op: "login"/.test(line)), 'fields as key: value');
  t.notMatch(pretty.join('\n'), /\u001b\[/, 'no colours into something that is not a terminal');

  const json = written('never');
  t.equal(json.length, 2, 'one line each');
  t.ok(json.every(isJson), 'every line is JSON');
  t.match(JSON.parse(json[0]), { level: 30, msg: 'exchange', op: 'login', status: 200 });
});

t.test("'auto' is pretty on a terminal only", async (t) => {
  t.ok(written('auto', false).every(isJson), 'JSON into a pipe or a file');
  const onTerminal = written('auto', true);
  t.notOk(onTerminal.some(isJson), 'human lines on a terminal');
  t.match(onTerminal.join('\n'), /\u001b\[/, 'in colour there');
});

t.test('a bad log level is a clear error naming the levels', async (t) => {
  t.throws(() => createLogger({ level: 'chatty' }), new LogLevelError('chatty'));
  t.throws(() => createLogger({ level: 'chatty' }), { message: /"chatty" is not one of trace, debug, info, warn, error, fatal, silent/ });
  for (const level of LOG_LEVELS) t.doesNotThrow(() => createLogger({ level, destination: { write: () => {} } }), `${level} is fine`);
  await t.rejects(serve({ config: { ...TEST_CONFIG, logLevel: 'chatty' }, store: new MemoryStore(), app: testApp() }), { message: /chatty/ }, 'serve refuses it before listening');
});
