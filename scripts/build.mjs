#!/usr/bin/env node
// `npm run build`: compile src/ to dist/ (JavaScript, .d.ts, source maps) with tsconfig.build.json,
// from an empty dist/ so nothing of a deleted source is left to ship.
//
// `--if-possible` (what `prepare` passes, run by `npm ci` and `npm pack`): where TypeScript is not
// installed (`npm ci --omit=dev`) and a dist/ already exists, keep it instead of failing.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = fileURLToPath(new URL('../dist/', import.meta.url));
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  if (process.argv.includes('--if-possible') && existsSync(new URL('../dist/cli/main.js', import.meta.url))) {
    console.error('rotor: typescript is not installed (a production install): keeping the dist/ already built');
    process.exit(0);
  }
  console.error('rotor: cannot build dist/: typescript is not installed (run `npm ci` with dev dependencies)');
  process.exit(1);
}
rmSync(dist, { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
