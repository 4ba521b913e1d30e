import fs from 'node:fs';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import {
  readCommonConfig,
  readDatabaseUrl,
  readInteger,
  readPort,
  type CommonConfig,
  type Env,
  type RateLimit,
} from './config.js';
import { openDatabase, type Database } from './db.js';
import { createHttpServer, type HttpServer } from './http.js';
import type { Logger } from './logging.js';
import { migrate, type Migration } from './migrations.js';

const packageJson = JSON.parse(
  fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string };
/** The platform's version (package.json), shown in its API documents. */
export const PLATFORM_VERSION = packageJson.version;

/** What makes one of our HTTP services: its name, port, tables and routes. */
export interface ServiceDefinition<Tables> {
  /** `crm`, `inventory` or `integration`: names the SQLite file, logs and metrics. */
  name: string;
  title: string;
  description: string;
  /** e.g. `CRM_PORT` and its default. */
  portVariable: string;
  defaultPort: number;
  /** e.g. `CRM_DATABASE_URL`: PostgreSQL when set, SQLite under DATA_DIR otherwise. */
  databaseVariable: string;
  migrations: Migration[];
  /**
   * The longest outgoing call the service makes with these settings, in ms (e.g. its request
   * timeout): shutdown waits that long for calls in flight. Default 0 (it makes none).
   */
  longestCallMs?: (env: Env) => number;
  /** Builds the service's routes and background work from its database and settings. */
  setup: (context: ServiceContext<Tables>) => ServiceRuntime;
}

export interface ServiceContext<Tables> {
  database: Database<Tables>;
  logger: Logger;
  /** The service's Prometheus registry, for its own metrics. */
  metrics: Registry;
  /** Environment the service reads its own settings from. */
  env: Env;
}

/** What a service adds to the shared HTTP server. */
export interface ServiceRuntime {
  /**
   * Runs once before the routes are registered, e.g. to bring stored data up to date; a rejection
   * stops the service from starting. Default nothing.
   */
  prepare?(): Promise<void>;
  /** The service's routes, as a Fastify plugin. */
  routes: FastifyPluginAsync;
  /** Starts background work once the server listens at `url`. */
  start?(listening: { url: string }): Promise<void>;
  /**
   * Stops background work and releases waiting requests; runs before the server closes. Calls
   * still in flight after `abandonAfterMs` are stopped and released unrecorded for the next
   * instance. Default: wait for every call.
   */
  stop?(abandonAfterMs?: number): Promise<void>;
  /** Rejects with a reason when the service cannot do its job (beyond its database answering). */
  checkReady?(): Promise<void>;
}

export interface ServiceAppOptions<Tables> {
  database: Database<Tables>;
  logger: Logger;
  /** Bearer token required on non-health routes; none by default. */
  apiToken?: string | undefined;
  /** A token that may only read; only with `apiToken`. Default none. */
  apiReadToken?: string | undefined;
  /** Host names served besides the loopback ones (`ALLOWED_HOSTS`). Default none. */
  allowedHosts?: readonly string[] | undefined;
  /** Requests allowed per client address and window (`RATE_LIMIT_*`); no limit by default. */
  rateLimit?: RateLimit | undefined;
  /** Where the service reads its own settings. Default `process.env`. */
  env?: Env;
}

export interface ServiceApp {
  app: HttpServer;
  runtime: ServiceRuntime;
}

/** Migrates the database and builds the service's HTTP app, not yet listening nor started. */
export async function createServiceApp<Tables>(
  definition: ServiceDefinition<Tables>,
  options: ServiceAppOptions<Tables>,
): Promise<ServiceApp> {
  const result = await migrate(options.database, definition.migrations);
  if (result.applied.length > 0) {
    options.logger.info(
      { applied: result.applied },
      `Database migrated to version ${result.current}`,
    );
  }
  const app = await createHttpServer({
    service: definition.name,
    title: definition.title,
    description: definition.description,
    version: packageJson.version,
    logger: options.logger,
    apiToken: options.apiToken,
    apiReadToken: options.apiReadToken,
    allowedHosts: options.allowedHosts,
    rateLimit: options.rateLimit,
    checkReady: async () => {
      await options.database.ping();
      await runtime.checkReady?.();
    },
  });
  const runtime = definition.setup({
    database: options.database,
    logger: options.logger,
    metrics: app.metrics,
    env: options.env ?? process.env,
  });
  try {
    await runtime.prepare?.();
  } catch (error) {
    await app.close();
    throw error;
  }
  await app.register(runtime.routes);
  await app.ready();
  return { app, runtime };
}

export interface RunningService {
  app: HttpServer;
  url: string;
  stop(): Promise<void>;
}

export interface ServiceConfig extends CommonConfig {
  port: number;
  databaseUrl: string | undefined;
  /**
   * How long a stop on SIGTERM or SIGINT may take, in ms (`SHUTDOWN_TIMEOUT_MS`). Default: the
   * longest outgoing call plus `SHUTDOWN_MARGIN_MS`, at least 10 s.
   */
  shutdownTimeoutMs: number;
}

/** Time a stop keeps, after the calls in flight, to close the server and the database, in ms. */
export const SHUTDOWN_MARGIN_MS = 5_000;

export function readServiceConfig(definition: ServiceDefinition<unknown>, env: Env): ServiceConfig {
  const longestCallMs = definition.longestCallMs?.(env) ?? 0;
  return {
    ...readCommonConfig(env),
    port: readPort(env, definition.portVariable, definition.defaultPort),
    databaseUrl: readDatabaseUrl(env, definition.databaseVariable),
    // A deadline shorter than a call plus the margin would cut calls a healthy peer answers.
    shutdownTimeoutMs: readInteger(
      env,
      'SHUTDOWN_TIMEOUT_MS',
      Math.max(10_000, longestCallMs + SHUTDOWN_MARGIN_MS),
      { min: longestCallMs + SHUTDOWN_MARGIN_MS, max: 3_600_000 },
    ),
  };
}

/** Opens the database, migrates it and listens; `stop()` closes the server, then the database. */
export async function startService<Tables>(
  definition: ServiceDefinition<Tables>,
  config: ServiceConfig,
  logger: Logger,
): Promise<RunningService> {
  const database = await openDatabase<Tables>({
    url: config.databaseUrl,
    sqliteFile: path.join(config.dataDir, `${definition.name}.sqlite`),
    scrubAfterMs: config.sqliteScrubAfterMs,
  });
  logger.info(`Using ${database.dialect} database at ${database.location}`);
  let service: ServiceApp;
  try {
    service = await createServiceApp(definition, {
      database,
      logger,
      apiToken: config.apiToken,
      apiReadToken: config.apiReadToken,
      allowedHosts: config.allowedHosts,
      rateLimit: config.rateLimit,
    });
  } catch (error) {
    await database.close();
    throw error;
  }
  const { app, runtime } = service;
  const stop = async () => {
    // Calls in flight get the deadline less the margin; closing the rest fits in the margin. The
    // server and the database close even when stopping the background work failed.
    try {
      await runtime.stop?.(config.shutdownTimeoutMs - SHUTDOWN_MARGIN_MS);
    } finally {
      try {
        await app.close();
      } finally {
        await database.close();
      }
    }
  };
  let url: string;
  try {
    url = await app.listen({ host: config.host, port: config.port });
    logger.info(`${definition.title} listening on ${url} (API docs at ${url}/docs)`);
    await runtime.start?.({ url });
  } catch (error) {
    // Services sharing this process go on or stop by themselves: leave nothing of this one open.
    await stop().catch(() => undefined);
    throw error;
  }
  return { app, url, stop };
}
