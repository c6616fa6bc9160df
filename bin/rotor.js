#!/usr/bin/env node
// rotor is written in TypeScript and runs without a build step: tsx loads the sources.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
