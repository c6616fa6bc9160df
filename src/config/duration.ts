/**
 * The one duration syntax for people: `500ms`, `90s`, `30min`, `2h`, `1d`, or parts of these
 * summed (`1h 30min`), as note 004's token server writes its options. Whole numbers only, so a
 * duration is always an exact count of milliseconds.
 */
import { ConfigError } from './error.ts';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000, day: 86_400_000, days: 86_400_000, week: 604_800_000, weeks: 604_800_000 };
// Longer names first, so `min` is not read as `m`… and `days` not as `d`.
const UNIT = '(ms|min|s|h|days?|d|weeks?)';
const WHOLE = new RegExp(`^(?:\\d+\\s*${UNIT}\\s*)+$`);
const PART = new RegExp(`(\\d+)\\s*${UNIT}`, 'g');

/** Milliseconds of a duration such as `90s`; throws ConfigError for anything else (a bare number included: its unit would be a guess). */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (!WHOLE.test(trimmed)) throw new ConfigError(`bad duration ${JSON.stringify(text)}: want e.g. 500ms, 90s, 30min, 2h, 1d`);
  let ms = 0;
  for (const [, amount, unit] of trimmed.matchAll(PART)) ms += Number(amount) * UNIT_MS[unit];
  if (!Number.isSafeInteger(ms)) throw new ConfigError(`duration ${JSON.stringify(text)} is too long`);
  return ms;
}

/** The units a setting's name ends in (`…Ms`, `…Seconds`, `…Minutes`, `…Hours`), in milliseconds. */
export const SETTING_UNITS = { ms: 1, seconds: 1_000, minutes: 60_000, hours: 3_600_000 } as const;
export type SettingUnit = keyof typeof SETTING_UNITS;

/** The unit a setting's name says, if it names one. */
export function unitOfName(key: string): SettingUnit | undefined {
  if (key.endsWith('Ms')) return 'ms';
  if (key.endsWith('Seconds')) return 'seconds';
  if (key.endsWith('Minutes')) return 'minutes';
  if (key.endsWith('Hours')) return 'hours';
  return undefined;
}

/** A duration (`2h`) as a whole number of `unit`; throws ConfigError when it is not one (`90s` of minutes). */
export function durationIn(text: string, unit: SettingUnit): number {
  const ms = parseDuration(text);
  if (ms % SETTING_UNITS[unit] !== 0) throw new ConfigError(`${JSON.stringify(text)} is not a whole number of ${unit}`);
  return ms / SETTING_UNITS[unit];
}
