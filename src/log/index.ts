import pino, { type Logger } from 'pino';

export type { Logger };

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
];

export function createLogger(options: { level?: string; destination?: pino.DestinationStream } = {}): Logger {
  const settings: pino.LoggerOptions = {
    name: 'rotor',
    level: options.level ?? 'info',
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
