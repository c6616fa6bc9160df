/**
 * rotor's own version, from rotor's package.json. yargs would guess one from the package.json
 * above the node_modules that holds yargs — in a project that installed rotor, that project's —
 * so the file is found from this module's own place instead (src/cli/ or dist/cli/, two levels
 * below the package root either way).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function rotorVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const manifest = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (manifest.name === 'rotor' && manifest.version) return manifest.version;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`rotor's package.json not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}
