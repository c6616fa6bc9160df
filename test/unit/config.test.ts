import t from 'tap';
import { ConfigError, DEFAULTS, resolveConfig } from '../../src/config/defaults.ts';

t.test('defaults validate and overrides merge per section', async (t) => {
  const config = resolveConfig({ port: 0, wire: { maxBodyBytes: 100_000 } });
  t.equal(config.port, 0);
  t.equal(config.wire.maxBodyBytes, 100_000);
  t.equal(config.wire.maxHeaders, DEFAULTS.wire.maxHeaders, 'untouched fields keep their default');
  t.same(resolveConfig(), { ...DEFAULTS }, 'no override gives the defaults');
});

t.test('bad settings fail at start with a message naming the setting', async (t) => {
  const bad: Array<[string, Parameters<typeof resolveConfig>[0], RegExp]> = [
    ['negative port', { port: -1 }, /port/],
    ['fractional limit', { wire: { maxHeaders: 1.5 } }, /wire.maxHeaders/],
    ['header block smaller than a line', { wire: { maxLineBytes: 4096, maxHeaderBytes: 1024 } }, /maxHeaderBytes/],
    ['never-expiring tokens without the switch', { session: { tokenTtlMinutes: -1 } }, /allowNeverExpiring/],
    ['zero ttl', { session: { tokenTtlMinutes: 0 } }, /tokenTtlMinutes/],
    ['scrypt N not a power of two', { auth: { scryptN: 1000 } }, /power of two/],
    ['frame deadline shorter than header deadline', { connection: { headerTimeoutMs: 5000, frameTimeoutMs: 1000 } }, /frameTimeoutMs/],
    ['metadata larger than a body', { wire: { maxBodyBytes: 1000 } }, /session.maxMetaBytes/],
    ['TOTP window too wide', { auth: { totpWindow: 3 } }, /totpWindow/],
  ];
  for (const [name, override, message] of bad) {
    t.throws(() => resolveConfig(override), { name: 'ConfigError', message }, name);
  }
  t.ok(resolveConfig({ session: { tokenTtlMinutes: -1, allowNeverExpiring: true } }), 'never-expiring with the switch is allowed');
  t.type(new ConfigError('x'), Error);
});
