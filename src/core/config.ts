import os from 'node:os';
import path from 'node:path';

/** Raised when an environment variable holds a value the service cannot run with. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly value: string,
    readonly allowed: string,
  ) {
    super(
      `Invalid configuration: ${variable}=${JSON.stringify(value)} is not allowed; ${allowed}.`,
    );
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

function readRaw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

export function readString(env: Env, name: string, fallback: string): string {
  return readRaw(env, name) ?? fallback;
}

export function readOptionalString(env: Env, name: string): string | undefined {
  return readRaw(env, name);
}

export function readInteger(
  env: Env,
  name: string,
  fallback: number,
  bounds: { min: number; max: number },
): number {
  const raw = readRaw(env, name);
  if (raw === undefined) return fallback;
  const value = /^-?\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < bounds.min || value > bounds.max) {
    throw new ConfigError(
      name,
      raw,
      `use a whole number from ${bounds.min} to ${bounds.max} (default ${fallback})`,
    );
  }
  return value;
}

export function readChoice<T extends string>(
  env: Env,
  name: string,
  fallback: T,
  choices: readonly T[],
): T {
  const raw = readRaw(env, name);
  if (raw === undefined) return fallback;
  if (!(choices as readonly string[]).includes(raw)) {
    throw new ConfigError(name, raw, `use one of ${choices.join(', ')} (default ${fallback})`);
  }
  return raw as T;
}

/** What `redactUrl` masks besides passwords. */
export interface UrlRedaction {
  /**
   * Also the user name, every query value and the fragment: for URLs an API client gave (webhook
   * targets), where any part may be a token. Default false: database and broker URLs keep their
   * user name and harmless parameters like `sslmode`.
   */
  everyValue?: boolean;
}

/**
 * The URL with its password shown as `***`, in the user-info part and in any query parameter named
 * like one (pg takes `?password=`), for logs and error messages. Text that does not parse as a URL
 * has anything between `//` and `@` masked (and, with `everyValue`, its query and fragment).
 */
export function redactUrl(url: string, { everyValue = false }: UrlRedaction = {}): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    const masked = url.replace(/\/\/[^/?#]*@/, '//***@');
    return everyValue ? masked.replace(/[?#].*$/s, '?***') : masked;
  }
  if (parsed.password) parsed.password = '***';
  if (!everyValue) {
    for (const name of [...parsed.searchParams.keys()]) {
      if (/password/i.test(name)) parsed.searchParams.set(name, '***');
    }
    return parsed.toString();
  }
  if (parsed.username) parsed.username = '***';
  // Names stay as written; a part without `=` may be a bare token, so it is masked whole.
  parsed.search = parsed.search
    .slice(1)
    .split('&')
    .map((part) => (part === '' || part.includes('=') ? part.replace(/=.*/s, '=***') : '***'))
    .join('&');
  if (parsed.hash) parsed.hash = '***';
  return parsed.toString();
}

export function readUrl(
  env: Env,
  name: string,
  fallback: string | undefined,
  protocols: readonly string[],
): string | undefined {
  const raw = readRaw(env, name);
  if (raw === undefined) return fallback;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || !protocols.includes(url.protocol)) {
    // The value may hold a password: it is shown masked, like every URL the services print.
    throw new ConfigError(
      name,
      redactUrl(raw),
      `use a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
    );
  }
  return raw;
}

export type LogFormat = 'pretty' | 'json';

/** Settings every service reads the same way. */
export interface CommonConfig {
  /** Address to listen on. Default `127.0.0.1`. */
  host: string;
  /** Folder for the embedded SQLite files. Default `./data`. */
  dataDir: string;
  /** How long after an erasure a SQLite file is scrubbed (`SQLITE_SCRUB_AFTER_MS`). Default 60 s. */
  sqliteScrubAfterMs: number;
  /** Pino log level. Default `info`. */
  logLevel: string;
  /** `pretty` on a terminal, `json` otherwise, unless `LOG_FORMAT` says. */
  logFormat: LogFormat;
  /** The admin token, required on every non-probe route; required when `host` is not loopback. */
  apiToken: string | undefined;
  /** A token that may only read (GET and HEAD); needs `apiToken`. Default unset. */
  apiReadToken: string | undefined;
  /** Host names served besides the loopback ones (`ALLOWED_HOSTS`). Default none. */
  allowedHosts: string[];
  /** Requests each client address may make per window. Default 1000 per 1000 ms. */
  rateLimit: RateLimit;
}

/** A fixed-window request limit per client address; `max` 0 turns limiting off. */
export interface RateLimit {
  /** Requests allowed per window (`RATE_LIMIT_MAX`). Default 1000; 0 means no limit. */
  max: number;
  /** The window's length in ms (`RATE_LIMIT_WINDOW_MS`). Default 1000. */
  windowMs: number;
}

export function readRateLimit(env: Env): RateLimit {
  return {
    max: readInteger(env, 'RATE_LIMIT_MAX', 1000, { min: 0, max: 1_000_000_000 }),
    windowMs: readInteger(env, 'RATE_LIMIT_WINDOW_MS', 1000, { min: 100, max: 3_600_000 }),
  };
}

/** The values `LOG_LEVEL` accepts: pino's levels, and `silent` for no logs. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function readApiReadToken(env: Env, apiToken: string | undefined): string | undefined {
  const apiReadToken = readOptionalString(env, 'API_READ_TOKEN');
  if (apiReadToken === undefined) return undefined;
  if (apiToken === undefined) {
    throw new ConfigError(
      'API_READ_TOKEN',
      '<redacted>',
      'a read-only token needs the admin token too: set API_TOKEN (without it no route asks for a token)',
    );
  }
  if (apiReadToken.length < 16 || apiReadToken === apiToken) {
    throw new ConfigError(
      'API_READ_TOKEN',
      '<redacted>',
      'use a secret of at least 16 characters, different from API_TOKEN',
    );
  }
  return apiReadToken;
}

/** A host name (`mip.example.com`), its subdomains too with a leading dot, or an IP address. */
const ALLOWED_HOST_PATTERN =
  /^(\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$/;

/**
 * `ALLOWED_HOSTS`: comma-separated names the services answer to besides localhost, 127.0.0.1 and
 * [::1], lower-cased; a leading dot admits the domain and every subdomain.
 */
export function readAllowedHosts(env: Env): string[] {
  const raw = readRaw(env, 'ALLOWED_HOSTS');
  if (raw === undefined) return [];
  return raw.split(',').map((entry) => {
    const host = entry.trim().toLowerCase();
    if (!ALLOWED_HOST_PATTERN.test(host)) {
      throw new ConfigError(
        'ALLOWED_HOSTS',
        raw,
        `"${entry.trim()}" is not a host name; list names without scheme, port or path, comma-separated, e.g. ALLOWED_HOSTS=mip.example.com,.internal.example (a leading dot admits subdomains)`,
      );
    }
    return host;
  });
}

export function readCommonConfig(env: Env): CommonConfig {
  const host = readString(env, 'HOST', '127.0.0.1');
  const apiToken = readOptionalString(env, 'API_TOKEN');
  if (!isLoopbackHost(host) && apiToken === undefined) {
    throw new ConfigError(
      'HOST',
      host,
      'listening beyond loopback needs API_TOKEN set to a secret bearer token (or use HOST=127.0.0.1)',
    );
  }
  if (apiToken !== undefined && apiToken.length < 16) {
    throw new ConfigError('API_TOKEN', '<redacted>', 'use a secret of at least 16 characters');
  }
  const apiReadToken = readApiReadToken(env, apiToken);
  return {
    host,
    dataDir: path.resolve(readString(env, 'DATA_DIR', './data')),
    sqliteScrubAfterMs: readInteger(env, 'SQLITE_SCRUB_AFTER_MS', 60_000, {
      min: 0,
      max: 86_400_000,
    }),
    logLevel: readChoice(env, 'LOG_LEVEL', 'info', LOG_LEVELS),
    logFormat: readChoice<LogFormat>(env, 'LOG_FORMAT', process.stdout.isTTY ? 'pretty' : 'json', [
      'pretty',
      'json',
    ]),
    apiToken,
    apiReadToken,
    allowedHosts: readAllowedHosts(env),
    rateLimit: readRateLimit(env),
  };
}

/** `INSTANCE_ID`: this process's name in leases and claims. Default `<hostname>-<pid>`. */
export function readInstanceId(env: Env): string {
  return readString(env, 'INSTANCE_ID', `${os.hostname()}-${process.pid}`);
}

export function readPort(env: Env, name: string, fallback: number): number {
  return readInteger(env, name, fallback, { min: 0, max: 65535 });
}

export function readDatabaseUrl(env: Env, name: string): string | undefined {
  return readUrl(env, name, undefined, ['postgres:', 'postgresql:']);
}
