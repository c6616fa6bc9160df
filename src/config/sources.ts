/**
 * Where a running rotor's settings come from, each over the one before: DEFAULTS, then a JSON
 * config file (`--config FILE`), then `ROTOR_*` env vars, then flags. Every setting can be given
 * in each: `connection.maxInFlight` is `{"connection": {"maxInFlight": 32}}` in the file,
 * ROTOR_CONNECTION_MAX_IN_FLIGHT=32 in the env and `--connection-max-in-flight 32` as a flag.
 *
 * Each source is checked on its own first, so a problem is reported with where it was given (the
 * file, the variable, the flag); the merged whole is then held to the rules between settings.
 * Every problem found is reported at once.
 */
import { readFileSync } from 'node:fs';
import { mergeSettings, resolveConfig, type RotorConfig } from './defaults.ts';
import { ConfigError } from './error.ts';
import { describeField, describeIssues, PARTIAL_SCHEMA, SETTINGS, type Setting } from './schema.ts';
import { didYouMean } from './suggest.ts';

/** A setting given as a flag: which flag (for messages), which setting, and its value as the parser gave it. */
export interface FlagSetting {
  flag: string;
  path: string;
  value: unknown;
}

export interface ConfigSources {
  /** A JSON config file's path. */
  file?: string | undefined;
  /** The environment to read ROTOR_* variables from. */
  env?: NodeJS.ProcessEnv | undefined;
  flags?: readonly FlagSetting[] | undefined;
}

/** ROTOR_* variables that are not settings but are read elsewhere (so not refused as unknown). */
export const OTHER_ROTOR_VARS: ReadonlySet<string> = new Set([
  'ROTOR_PASSWORD', // the CLI's password (src/cli/password.ts)
  'ROTOR_MODEL_RUNS', // the model-based session tests' run count
]);

const ENV_PREFIX = 'ROTOR_';

const upperSnake = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
const kebab = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

/** `connection.maxInFlight` → ROTOR_CONNECTION_MAX_IN_FLIGHT; `port` → ROTOR_PORT. */
export function envName(setting: Setting): string {
  return ENV_PREFIX + [setting.section, setting.key].filter(Boolean).map((part) => upperSnake(part!)).join('_');
}

/** `connection.maxInFlight` → connection-max-in-flight (the flag, without its dashes); `logLevel` → log-level. */
export function flagName(setting: Setting): string {
  return [setting.section, setting.key].filter(Boolean).map((part) => kebab(part!)).join('-');
}

/** A setting's line in --help: what it may hold, its variable. */
export function settingHelp(setting: Setting): string {
  return `${describeField(setting.field)}; env ${envName(setting)}`;
}

const BY_ENV_NAME = new Map(SETTINGS.map((setting) => [envName(setting), setting]));

/** The effective config from the sources; throws ConfigError naming every problem and where it was given. */
export function loadConfig(sources: ConfigSources): RotorConfig {
  const problems: string[] = [];
  const layers = [
    sources.file === undefined ? {} : fileSettings(sources.file, problems),
    envSettings(sources.env ?? {}, problems),
    flagSettings(sources.flags ?? [], problems),
  ];
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return resolveConfig(layers.reduce(mergeSettings, {}));
}

/** Check some settings from one source; the problems, each prefixed with `where`. */
function check(settings: object, where: string, problems: string[]): void {
  const result = PARTIAL_SCHEMA.safeParse(settings);
  if (!result.success) problems.push(...describeIssues(result.error.issues).map((line) => `${where}: ${line}`));
}

function fileSettings(file: string, problems: string[]): object {
  let settings: unknown;
  try {
    settings = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    problems.push(`${file}: ${err instanceof SyntaxError ? 'not JSON: ' : ''}${(err as Error).message}`);
    return {};
  }
  if (typeof settings !== 'object' || settings === null || Array.isArray(settings)) {
    problems.push(`${file}: must hold a JSON object of settings`);
    return {};
  }
  check(settings, file, problems);
  return settings;
}

function envSettings(env: NodeJS.ProcessEnv, problems: string[]): object {
  let settings = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || OTHER_ROTOR_VARS.has(name) || value === undefined) continue;
    const setting = BY_ENV_NAME.get(name);
    if (!setting) {
      problems.push(`${name}: not a rotor setting${didYouMean(name, [...BY_ENV_NAME.keys(), ...OTHER_ROTOR_VARS])}`);
      continue;
    }
    const one = settingAt(setting.path, value);
    check(one, name, problems);
    settings = mergeSettings(settings, one);
  }
  return settings;
}

function flagSettings(flags: readonly FlagSetting[], problems: string[]): object {
  let settings = {};
  const givenBy = new Map<string, string>();
  for (const { flag, path, value } of flags) {
    const earlier = givenBy.get(path);
    if (earlier !== undefined) {
      problems.push(`--${earlier} and --${flag} both set ${path}: give one`);
      continue;
    }
    givenBy.set(path, flag);
    if (Array.isArray(value)) {
      problems.push(`--${flag}: given more than once`);
      continue;
    }
    const one = settingAt(path, value);
    check(one, `--${flag}`, problems);
    settings = mergeSettings(settings, one);
  }
  return settings;
}

/** `{connection: {maxInFlight: value}}` for `connection.maxInFlight`. */
function settingAt(path: string, value: unknown): object {
  return path
    .split('.')
    .reverse()
    .reduce<unknown>((inner, key) => ({ [key]: inner }), value) as object;
}
