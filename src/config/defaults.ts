/**
 * Every limit and timeout rotor has, in one place (their values: settings.ts). `resolveConfig`
 * merges an override over them and validates the result once, at start (against
 * src/config/schema.ts: what each setting may hold), so a bad setting fails loudly before a
 * socket is opened rather than misbehaving under load.
 */
import { ConfigError } from './error.ts';
import { CONFIG_SCHEMA, describeIssues, type SchemaConfig } from './schema.ts';
import { DEFAULTS, type DeepPartial, type RotorConfig } from './settings.ts';

export * from './settings.ts';

export { ConfigError };

/**
 * Merge an override over DEFAULTS and validate every setting (src/config/schema.ts): unknown
 * keys, out-of-range values and broken rules between settings all throw one ConfigError naming
 * each by its path. A key given as undefined is not given.
 */
export function resolveConfig(override: DeepPartial<RotorConfig> = {}): RotorConfig {
  const result = CONFIG_SCHEMA.safeParse(mergeSettings(DEFAULTS, override));
  if (!result.success) throw new ConfigError(describeIssues(result.error.issues).join('\n'));
  const config: RotorConfig = result.data;
  return config;
}

/** `over` merged into `base` a section at a time; keys whose value is undefined are left out. */
export function mergeSettings(base: object, over: object): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const below = merged[key];
    merged[key] = isPlainObject(value) && isPlainObject(below) ? mergeSettings(below, value) : value;
  }
  return merged;
}

function isPlainObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// The schema describes exactly RotorConfig's settings: a key one has and the other lacks fails here.
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
type SectionsAgree<A, B> = false extends { [K in keyof A & keyof B]: A[K] extends object ? SameKeys<A[K], B[K]> : true }[keyof A & keyof B] ? false : true;
const schemaCoversConfig: SameKeys<SchemaConfig, RotorConfig> & SectionsAgree<SchemaConfig, RotorConfig> = true;
void schemaCoversConfig;
