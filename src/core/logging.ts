import { pino, type Logger } from 'pino';
import type { LogFormat } from './config.js';

export type { Logger };

export interface LoggerOptions {
  /** Name printed on every line, e.g. `crm`. */
  service: string;
  /** Pino level. Default `info`. */
  level?: string;
  /** `pretty` for people, `json` for machines. Default `json`. */
  format?: LogFormat;
}

/** Header and field paths whose values must never reach a log. */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'secret',
  '*.secret',
  'token',
  '*.token',
];

export function createLogger(options: LoggerOptions): Logger {
  const format = options.format ?? 'json';
  return pino({
    name: options.service,
    level: options.level ?? 'info',
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(format === 'pretty'
      ? {
          transport: {
            target: 'pino-pretty',
            options: {
              colorize: true,
              singleLine: true,
              translateTime: 'HH:MM:ss.l',
              ignore: 'pid,hostname',
            },
          },
        }
      : {}),
  });
}
