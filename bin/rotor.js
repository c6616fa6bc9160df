#!/usr/bin/env node
// The `rotor` command runs the compiled CLI (dist/, built by `npm run build`; `npm ci` in a
// checkout builds it, the published package ships it). No TypeScript loader at run time.
const main = new URL('../dist/cli/main.js', import.meta.url);
try {
  await import(main.href);
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && err.url === main.href) {
    console.error('rotor: dist/ is not built: run `npm run build` in the rotor checkout');
    process.exit(1);
  }
  throw err;
}
