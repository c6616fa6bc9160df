/**
 * `rotor/client` is the client alone: a user who imports it must not load the server's
 * validation library (zod: ≈ 225 modules, 50–100 ms at start) or any server code.
 * A resolve hook makes those imports fail, in a child process importing the built client.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'rotor-client-deps-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const hook = join(dir, 'hook.mjs');
writeFileSync(
  hook,
  `export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  if (/[/\\\\]node_modules[/\\\\]zod[/\\\\]/.test(resolved.url) || /[/\\\\]dist[/\\\\](server|store|transport|config[/\\\\]schema)/.test(resolved.url)) {
    throw new Error('the client loaded ' + resolved.url + ' (from ' + context.parentURL + ')');
  }
  return resolved;
}\n`,
);
const register = join(dir, 'register.mjs');
writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`);

const run = (entry: string) =>
  spawnSync(process.execPath, ['--import', register, '--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(join(root, entry)).href)}); console.log('loaded');`], {
    encoding: 'utf8',
  });

t.test('the built client loads no zod and no server code', async (t) => {
  const client = run('dist/client/index.js');
  t.equal(client.stderr.trim(), '', 'no error');
  t.equal(client.stdout.trim(), 'loaded');
});

t.test('the hook does catch it: the server entry loads zod', async (t) => {
  const server = run('dist/index.js');
  t.not(server.status, 0);
  t.match(server.stderr, /the client loaded .*(zod|dist\/(server|store|transport|config\/schema))/);
});
