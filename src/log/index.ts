/** rotor's logging: one pino logger (JSON lines, or pino-pretty on a terminal), the access log and the security events. */
import pino, { type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';

export type { Logger };
export { AccessLog, newRequestId, type AccessEntry, type AccessLogSettings } from './access.ts';
export { SecurityLog, type SecurityEvent, type SecurityLogOptions } from './security.ts';

/** Fields that must never reach a log line, wherever they appear. */
export const REDACTED_PATHS = [
  'token',
  'password',
  'totp',
  'secret',
  '*.token',
  '*.password',
  '*.totp',
  '*.secret',
  'headers.Token',
  'headers.token',
  'headers.Password',
  'headers.password',
  'headers.TOTP',
  'headers.totp',
  // Not `code`: that is an error code's field in the access log. An access code is a header.
  'headers.Code',
  'headers.code',
];

/** The levels a logger can be set to, quietest last. */
export const LOG_LEVELS: readonly string[] = [...Object.keys(pino.levels.values), 'silent'];

/** Human-readable lines (pino-pretty): 'auto' when the destination is a terminal. */
export type PrettyLogs = 'auto' | 'always' | 'never';

export interface LoggerOptions {
  /** One of LOG_LEVELS; default info. */
  level?: string | undefined;
  /** Where lines go; default stdout. */
  destination?: pino.DestinationStream | undefined;
  /** Default 'never' (JSON lines). */
  pretty?: PrettyLogs | undefined;
}

export class LogLevelError extends Error {
  constructor(level: unknown) {
    super(`log level ${JSON.stringify(level)} is not one of ${LOG_LEVELS.join(', ')}`);
    this.name = 'LogLevelError';
  }
}

/** Throws LogLevelError unless `level` is one of LOG_LEVELS (pino's own error for a bad level names its internals). */
export function checkLogLevel(level: unknown): asserts level is string {
  if (typeof level !== 'string' || !LOG_LEVELS.includes(level)) throw new LogLevelError(level);
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  checkLogLevel(level);
  const settings: pino.LoggerOptions = {
    name: 'rotor',
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  const pretty = options.pretty ?? 'never';
  const target = options.destination ?? process.stdout;
  if (pretty === 'always' || (pretty === 'auto' && isTerminal(target))) return pino(settings, prettyStream(target));
  return options.destination ? pino(settings, options.destination) : pino(settings);
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

function isTerminal(destination: pino.DestinationStream): boolean {
  return (destination as { isTTY?: unknown }).isTTY === true;
}

/**
 * pino-pretty's formatter, run in this thread as each line is written: lines appear in order and
 * none is lost when the process exits (a transport's worker thread may still hold some then).
 * Formatting costs the event loop, which is fine on a terminal a human reads. Colours only on a
 * terminal, so `always` into a file or a pipe stays greppable.
 */
function prettyStream(destination: pino.DestinationStream): pino.DestinationStream {
  const format = prettyFactory({ colorize: isTerminal(destination), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' });
  return { write: (line: string) => void destination.write(format(line)) };
}
