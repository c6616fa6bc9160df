/**
 * What every setting may hold (src/config/defaults.ts says what each means and its default),
 * checked with zod, and the rules between settings. Code, a JSON config file, env vars and
 * flags all go through this one schema, so a setting means the same wherever it is given:
 *
 *   - a number setting takes a number, or its decimal text (env vars and flags are text);
 *   - a duration setting (named `…Ms`, `…Seconds`, `…Minutes`) takes a number in that unit or a
 *     duration (`90s`, `2h`: src/config/duration.ts) that is a whole number of it;
 *   - a switch takes true or false, or the text `true` / `false`.
 *
 * Unknown keys are refused, with the path and the nearest known key.
 */
import { z } from 'zod';
import { durationIn, type SettingUnit } from './duration.ts';
import { didYouMean } from './suggest.ts';

/** What one setting may hold: the kind of value and its range (for messages, flags and tests). */
export type Field =
  | { readonly kind: 'int'; readonly min: number; readonly max: number; readonly unit?: SettingUnit | undefined }
  | { readonly kind: 'number'; readonly min: number; readonly max: number }
  | { readonly kind: 'boolean' }
  | { readonly kind: 'text' }
  | { readonly kind: 'choice'; readonly values: readonly string[] };

/** pino's levels (a test holds this to pino's own list). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const ANY = Number.MAX_SAFE_INTEGER;
/** Node runs a timer set for longer than this at once (with a TimeoutOverflowWarning): the cap of a setting that becomes a timer. */
const TIMER_MAX_MS = 2 ** 31 - 1;
const CENTURY_MINUTES = 100 * 365 * 24 * 60;

const FIELDS = z.registry<Field>();

const DECIMAL = /^\s*-?\d+(?:\.\d+)?\s*$/;
const EXAMPLE_DURATION: Record<SettingUnit, string> = { ms: '90s', seconds: '30s', minutes: '2h', hours: '24h' };

function show(value: unknown): string {
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : value === undefined ? 'nothing' : JSON.stringify(value);
}

function range(min: number, max: number): string {
  return max === ANY ? `of at least ${min}` : `from ${min} to ${max}`;
}

/** A whole number in [min, max]; with a unit, a duration too. `rule` is a further check of the value alone. */
function int(min: number, max = ANY, rule?: { holds: (value: number) => boolean; message: string }, unit?: SettingUnit) {
  const inUnit = unit ? ` (in ${unit}, or a duration like ${EXAMPLE_DURATION[unit]})` : '';
  let schema = z.number({ error: (issue) => `must be an integer ${range(min, max)}, got ${show(issue.input)}${inUnit}` }).int().min(min).max(max);
  if (rule) schema = schema.refine(rule.holds, { error: (issue) => `${rule.message}, got ${show(issue.input)}` });
  const field = z.preprocess((input, ctx) => {
    if (typeof input !== 'string') return input;
    if (DECIMAL.test(input)) return Number(input);
    if (!unit) return input;
    try {
      return durationIn(input, unit);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input });
      return z.NEVER;
    }
  }, schema);
  return field.register(FIELDS, { kind: 'int', min, max, unit });
}

const ms = (min: number, max = TIMER_MAX_MS) => int(min, max, undefined, 'ms');
const minutes = (min: number, max = CENTURY_MINUTES, rule?: Parameters<typeof int>[2]) => int(min, max, rule, 'minutes');
const seconds = (min: number, max: number) => int(min, max, undefined, 'seconds');
const hours = (min: number, max: number) => int(min, max, undefined, 'hours');

function number(min: number, max: number) {
  const schema = z.number({ error: (issue) => `must be a number from ${min} to ${max}, got ${show(issue.input)}` }).min(min).max(max);
  return z.preprocess((input) => (typeof input === 'string' && DECIMAL.test(input) ? Number(input) : input), schema).register(FIELDS, { kind: 'number', min, max });
}

function boolean() {
  const schema = z.boolean({ error: (issue) => `must be true or false, got ${show(issue.input)}` });
  return z.preprocess((input) => (input === 'true' ? true : input === 'false' ? false : input), schema).register(FIELDS, { kind: 'boolean' });
}

/** A name of 1–64 of A–Z a–z 0–9 _ . -, or '' for none. */
function nameOrNone(what: string) {
  return z
    .string({ error: (issue) => `must be a ${what} name, got ${show(issue.input)}` })
    .regex(/^([A-Za-z0-9_.-]{1,64})?$/, `a ${what} name is 1–64 of A–Z a–z 0–9 _ . - (or '' for none)`)
    .register(FIELDS, { kind: 'text' });
}

function text() {
  return z.string({ error: (issue) => `must be a non-empty string, got ${show(issue.input)}` }).min(1).register(FIELDS, { kind: 'text' });
}

function choice<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: (issue) => `must be one of ${values.join(', ')}, got ${show(issue.input)}` }).register(FIELDS, { kind: 'choice', values });
}

function section<T extends z.ZodRawShape>(shape: T) {
  return z.strictObject(shape, { error: (issue) => (issue.code === 'invalid_type' ? `must be an object of settings, got ${show(issue.input)}` : undefined) });
}

const SHAPE = {
  host: text(),
  port: int(0, 65535),
  wire: section({
    maxLineBytes: int(64, 1 << 20),
    maxHeaderBytes: int(64, 1 << 24),
    maxHeaders: int(1, 10_000),
    maxBodyBytes: int(0, 1 << 30),
  }),
  connection: section({
    maxConnections: int(1),
    // May exceed maxConnections (then only the global cap binds), so lowering one cap needs no change to the other.
    maxConnectionsPerAddress: int(1),
    listenBacklog: int(1, 65535),
    maxInFlight: int(1, 100_000),
    headerTimeoutMs: ms(1),
    frameTimeoutMs: ms(1),
    idleTimeoutMs: ms(1),
    drainTimeoutMs: ms(1),
    sweepIntervalMs: ms(1),
    sweepBatchSize: int(1, 100_000),
    shutdownGraceMs: ms(1),
  }),
  carriers: section({
    httpHeaderSlackBytes: int(0, 1 << 20),
    httpMaxRequestsPerSocket: int(0),
    wsPingIntervalMs: ms(100),
    wsMaxBufferedBytes: int(1024, 1 << 30),
  }),
  session: section({
    tokenTtlMinutes: minutes(-1, CENTURY_MINUTES, { holds: (value) => value !== 0, message: 'must not be 0 (-1 = never expires)' }),
    allowNeverExpiring: boolean(),
    bindClients: choice(['off', 'program', 'address', 'both']),
    revokedRetentionMinutes: minutes(1),
    maxMetaBytes: int(2, 1 << 30),
    maxTasksPerExchange: int(0, 1000),
    purgeIntervalMs: ms(1000, 90 * 60 * 1000),
    taskResultTtlMinutes: minutes(1),
    defaultWaitForSeconds: seconds(0, 86_400),
    maxCommitRetries: int(1, 1000),
    openTokenCreate: boolean(),
  }),
  auth: section({
    scryptN: int(2, 1 << 22, { holds: (value) => (value & (value - 1)) === 0, message: 'must be a power of two' }),
    scryptR: int(1, 64),
    scryptP: int(1, 16),
    maxConcurrentHashes: int(1, 64),
    maxQueuedLogins: int(0, 1_000_000),
    totpWindow: int(0, 1),
    maxUserNameBytes: int(1, 1024),
    failureFactor: int(0, 1_000_000),
    addressFailureFactor: int(0, 1_000_000),
    userFailureFactor: int(0, 1_000_000),
    waitIncrementSeconds: seconds(1, 86_400),
    maxFailureWaitSeconds: seconds(1, 86_400),
    failureResetMinutes: minutes(1, 365 * 24 * 60),
  }),
  tasks: section({
    concurrency: int(1, 1024),
    timeoutMs: ms(1),
    pollIntervalMs: ms(10),
  }),
  quotas: section({
    node: nameOrNone('node'),
    idleGapSeconds: seconds(1, 86_400),
    passwordTemplate: nameOrNone('template'),
    mintPerUser: int(0, 1_000_000),
  }),
  keys: section({
    rotationHours: hours(0, 10 * 365 * 24),
    reloadSeconds: seconds(1, 3600),
    skewSeconds: seconds(0, 86_400),
  }),
  peers: section({
    pullSeconds: seconds(1, 3600),
  }),
  seal: section({
    // Issue times are whole seconds: a nonce of 1 s could be too old the moment it is made.
    openNonceSeconds: seconds(2, 3600),
    rememberGenerations: int(1, 64),
    registeredSeconds: seconds(1, 3600),
  }),
  observability: section({
    metricsPort: int(0, 65535),
    metricsHost: text(),
    accessLog: boolean(),
    accessLogSample: number(0, 1),
    prettyLogs: choice(['auto', 'always', 'never']),
  }),
  logLevel: choice(LOG_LEVELS),
};

const ROOT = section(SHAPE);
type Config = z.output<typeof ROOT>;

/** The rules between settings, checked once every setting is valid on its own. */
/** The most memory the hashes running at once may take together (4 GiB). */
const SCRYPT_MEMORY_LIMIT = 4 * 1024 ** 3;

const RULES: Array<(config: Config) => { path: string; message: string } | undefined> = [
  ({ wire }) =>
    wire.maxHeaderBytes < wire.maxLineBytes
      ? { path: 'wire.maxHeaderBytes', message: `must be at least wire.maxLineBytes (${wire.maxLineBytes}), got ${wire.maxHeaderBytes}` }
      : undefined,
  ({ connection }) =>
    connection.frameTimeoutMs < connection.headerTimeoutMs
      ? { path: 'connection.frameTimeoutMs', message: `must not be shorter than connection.headerTimeoutMs (${connection.headerTimeoutMs}), got ${connection.frameTimeoutMs}` }
      : undefined,
  ({ session }) =>
    session.tokenTtlMinutes === -1 && !session.allowNeverExpiring
      ? { path: 'session.tokenTtlMinutes', message: '= -1 (never expires) needs session.allowNeverExpiring' }
      : undefined,
  // OpenSSL refuses scrypt with N ≥ 2^(16·r): every login would fail with ROTOR_E_INTERNAL.
  ({ auth }) =>
    auth.scryptN >= 2 ** (16 * auth.scryptR)
      ? { path: 'auth.scryptN', message: `must be below 2^(16 × auth.scryptR) = ${2 ** (16 * auth.scryptR)}, got ${auth.scryptN}` }
      : undefined,
  // Each running hash takes 128·N·r bytes: past this, the first logins would exhaust memory.
  ({ auth }) =>
    128 * auth.scryptN * auth.scryptR * auth.maxConcurrentHashes > SCRYPT_MEMORY_LIMIT
      ? {
          path: 'auth.scryptN',
          message: `with auth.scryptR ${auth.scryptR} and auth.maxConcurrentHashes ${auth.maxConcurrentHashes} needs ${128 * auth.scryptN * auth.scryptR * auth.maxConcurrentHashes} bytes for hashing at once, more than ${SCRYPT_MEMORY_LIMIT}`,
        }
      : undefined,
  ({ auth }) =>
    auth.maxFailureWaitSeconds < auth.waitIncrementSeconds
      ? { path: 'auth.maxFailureWaitSeconds', message: `must be at least auth.waitIncrementSeconds (${auth.waitIncrementSeconds}), got ${auth.maxFailureWaitSeconds}` }
      : undefined,
  // A counter forgotten before its wait ends would end the wait early.
  ({ auth }) =>
    auth.failureResetMinutes * 60 < auth.maxFailureWaitSeconds
      ? { path: 'auth.failureResetMinutes', message: `must be at least auth.maxFailureWaitSeconds (${auth.maxFailureWaitSeconds} s) in minutes, got ${auth.failureResetMinutes}` }
      : undefined,
  ({ wire, session }) =>
    session.maxMetaBytes > Math.max(wire.maxBodyBytes, 2)
      ? { path: 'session.maxMetaBytes', message: `must be at most wire.maxBodyBytes (${wire.maxBodyBytes}), got ${session.maxMetaBytes}` }
      : undefined,
  // A node signs with a retired key until its next reload: a token it signs then must still outlive nobody's retireAt.
  ({ keys }) =>
    keys.skewSeconds < keys.reloadSeconds
      ? { path: 'keys.skewSeconds', message: `must be at least keys.reloadSeconds (${keys.reloadSeconds}), got ${keys.skewSeconds}` }
      : undefined,
];

/** The whole config: every setting present and valid, and the rules between them kept. */
export const CONFIG_SCHEMA = ROOT.check((ctx) => {
  for (const rule of RULES) {
    const broken = rule(ctx.value);
    if (broken) ctx.issues.push({ code: 'custom', path: broken.path.split('.'), message: broken.message, input: ctx.value });
  }
});

/** Some settings, as one source (a file, the env, the flags) gives them: each valid on its own. */
export const PARTIAL_SCHEMA = z.strictObject(
  Object.fromEntries(Object.entries(SHAPE).map(([key, schema]) => [key, (schema instanceof z.ZodObject ? schema.partial() : schema).optional()])),
);

export type { Config as SchemaConfig };

/** One setting: where it is and what it may hold. */
export interface Setting {
  /** `connection.maxInFlight`; a top-level setting has no section (`port`). */
  path: string;
  section: string | undefined;
  key: string;
  field: Field;
}

/** Every setting, in the schema's order. */
export const SETTINGS: readonly Setting[] = Object.entries(SHAPE).flatMap<Setting>(([key, schema]) =>
  schema instanceof z.ZodObject
    ? Object.entries(schema.shape as Record<string, z.ZodType>).map(([inner, field]) => ({ path: `${key}.${inner}`, section: key, key: inner, field: fieldOf(field) }))
    : [{ path: key, section: undefined, key, field: fieldOf(schema) }],
);

function fieldOf(schema: z.ZodType): Field {
  const field = FIELDS.get(schema);
  if (!field) throw new Error('a setting without a field description');
  return field;
}

/** What a setting may hold, for help texts: `an integer from 1 to 100000`, `ms or a duration like 90s, …`. */
export function describeField(field: Field): string {
  switch (field.kind) {
    case 'int':
      return field.unit ? `${field.unit} or a duration like ${EXAMPLE_DURATION[field.unit]}, ${range(field.min, field.max)}` : `an integer ${range(field.min, field.max)}`;
    case 'number':
      return `a number from ${field.min} to ${field.max}`;
    case 'boolean':
      return 'true or false';
    case 'text':
      return 'a non-empty string';
    case 'choice':
      return `one of ${field.values.join(', ')}`;
  }
}

/** The setting at `path` (`connection.maxInFlight`); throws for a path that is none. */
export function settingAt(path: string): Setting {
  const setting = SETTINGS.find((candidate) => candidate.path === path);
  if (!setting) throw new Error(`no setting ${path}`);
  return setting;
}

/** The keys an object at `path` may hold ('' = the top level). */
function keysAt(path: string): string[] {
  if (path === '') return Object.keys(SHAPE);
  const schema = (SHAPE as Record<string, z.ZodType>)[path];
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

/** One line per problem: `connection.maxInflight: unknown key — did you mean maxInFlight?`, `port must be an integer from 0 to 65535, got 70000`. */
export function describeIssues(issues: z.ZodError['issues']): string[] {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const issue of issues) {
    const path = issue.path.join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) lines.push(`${path ? `${path}.` : ''}${key}: unknown key${didYouMean(key, keysAt(path))}`);
      continue;
    }
    // One problem per setting: a value that is not a number needs no "and not an integer" too.
    if (seen.has(path)) continue;
    seen.add(path);
    const where = path || 'the config';
    lines.push(issue.message.startsWith('must') || issue.message.startsWith('=') ? `${where} ${issue.message}` : `${where}: ${issue.message}`);
  }
  return lines;
}
