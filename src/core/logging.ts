import { pino, transport, type DestinationStream, type Logger } from 'pino';
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

/**
 * The one pretty-printing stream of this process (a worker thread): services sharing a process
 * (`npm start`) write through it in the order they log, not interleaved by three threads.
 */
let prettyStream: DestinationStream | undefined;

function prettyDestination(): DestinationStream {
  prettyStream ??= transport({
    target: 'pino-pretty',
    options: {
      colorize: true,
      singleLine: true,
      translateTime: 'HH:MM:ss.l',
      ignore: 'pid,hostname',
    },
  }) as DestinationStream;
  return prettyStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const settings = {
    name: options.service,
    level: options.level ?? 'info',
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  return (options.format ?? 'json') === 'pretty'
    ? pino(settings, prettyDestination())
    : pino(settings);
}
