/**
 * rotor's settings: their defaults and meaning (defaults.ts), what each may hold (schema.ts),
 * the duration syntax people write (duration.ts), and where a running rotor reads them from:
 * a JSON file, ROTOR_* env vars, flags (sources.ts).
 */
export * from './defaults.ts';
export { parseDuration, durationIn } from './duration.ts';
export { SETTINGS, LOG_LEVELS, settingAt, describeField, type Setting, type Field } from './schema.ts';
export { loadConfig, envName, flagName, settingHelp, OTHER_ROTOR_VARS, type ConfigSources, type FlagSetting } from './sources.ts';
