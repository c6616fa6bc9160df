/**
 * Shared helpers for the session tests (not a test file itself: tap only runs *.test.ts):
 * a small config, request frames, reply parsing, and how many fast-check runs to do.
 */
import { resolveConfig, type RotorConfig } from '../../src/config/defaults.ts';
import type { ErrorCode } from '../../src/errors.ts';
import { FrameParser, getHeader, type Header, type RequestFrame, type ResponseFrame } from '../../src/wire/index.ts';

/** Short-lived tokens, so that clock jumps of a minute or two expire them. */
export const TTL_MINUTES = 2;
export const TTL_MS = TTL_MINUTES * 60_000;
/** Where fake clocks start. */
export const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);

/** A config for tests: cheap scrypt, short tokens. */
export function testConfig(): RotorConfig {
  return resolveConfig({ auth: { scryptN: 1024 }, session: { tokenTtlMinutes: TTL_MINUTES } });
}

/** When a token issued at `nowMs` expires: its claims carry whole seconds. */
export function tokenExpiry(nowMs: number): number {
  return Math.floor(nowMs / 1000) * 1000 + TTL_MS;
}

export function request(verb: string, path: string, headers: Header[] = [], body?: Buffer): RequestFrame {
  return { kind: 'request', verb, path, headers, body };
}

/** The one response frame in `bytes`; throws if there is anything else. */
export function parseReply(bytes: Buffer): ResponseFrame {
  const parser = new FrameParser();
  const { frames, error } = parser.push(bytes);
  const frame = frames[0];
  if (error || frames.length !== 1 || frame.kind !== 'response' || parser.end()) {
    throw new Error(`not exactly one response frame: ${JSON.stringify(bytes.toString('latin1'))}`);
  }
  return frame;
}

export function errorCode(reply: ResponseFrame): ErrorCode | undefined {
  return getHeader(reply, 'Error') as ErrorCode | undefined;
}

/**
 * fast-check parameters: `numRuns` is `localRuns`, or `ciRuns` under CI=true, unless the
 * environment variable `envVar` (when given) sets it. FC_SEED (and FC_PATH) replay a failure
 * fast-check reported.
 */
export function fcRuns(localRuns: number, ciRuns: number, envVar?: string): { numRuns: number; seed?: number; path?: string } {
  const fromEnv = envVar === undefined ? NaN : Number(process.env[envVar]);
  const numRuns = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : process.env.CI === 'true' ? ciRuns : localRuns;
  const out: { numRuns: number; seed?: number; path?: string } = { numRuns };
  if (process.env.FC_SEED !== undefined) out.seed = Number(process.env.FC_SEED);
  if (process.env.FC_PATH !== undefined) out.path = process.env.FC_PATH;
  return out;
}
