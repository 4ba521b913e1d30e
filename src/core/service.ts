import fs from 'node:fs';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import {
  ConfigError,
  readCommonConfig,
  readDatabaseUrl,
  readPort,
  type CommonConfig,
  type Env,
} from './config.js';
import { openDatabase, type Database } from './db.js';
import { createHttpServer, type HttpServer } from './http.js';
import { createLogger, type Logger } from './logging.js';
import { migrate, type Migration } from './migrations.js';

const packageJson = JSON.parse(
  fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string };

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
  /** Registers the service's own routes (a Fastify plugin) given its database. */
  routes: (database: Database<Tables>) => FastifyPluginAsync;
}

export interface ServiceAppOptions<Tables> {
  database: Database<Tables>;
  logger: Logger;
  /** Bearer token required on non-health routes; none by default. */
  apiToken?: string | undefined;
}

/** Migrates the database and builds the service's HTTP app, not yet listening. */
export async function createServiceApp<Tables>(
  definition: ServiceDefinition<Tables>,
  options: ServiceAppOptions<Tables>,
): Promise<HttpServer> {
  const result = await migrate(options.database as Database<unknown>, definition.migrations);
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
    checkReady: () => options.database.ping(),
  });
  await app.register(definition.routes(options.database));
  await app.ready();
  return app;
}

export interface RunningService {
  app: HttpServer;
  url: string;
  stop(): Promise<void>;
}

export interface ServiceConfig extends CommonConfig {
  port: number;
  databaseUrl: string | undefined;
}

export function readServiceConfig(definition: ServiceDefinition<unknown>, env: Env): ServiceConfig {
  return {
    ...readCommonConfig(env),
    port: readPort(env, definition.portVariable, definition.defaultPort),
    databaseUrl: readDatabaseUrl(env, definition.databaseVariable),
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
  });
  logger.info(`Using ${database.dialect} database at ${database.location}`);
  let app: HttpServer;
  try {
    app = await createServiceApp(definition, { database, logger, apiToken: config.apiToken });
  } catch (error) {
    await database.close();
    throw error;
  }
  const url = await app.listen({ host: config.host, port: config.port });
  logger.info(`${definition.title} listening on ${url} (API docs at ${url}/docs)`);
  return {
    app,
    url,
    stop: async () => {
      await app.close();
      await database.close();
    },
  };
}

/**
 * Entry point of a service process: reads the environment, starts, and on SIGINT or SIGTERM stops
 * taking requests, finishes those in flight and exits 0. A bad setting exits 1 with one line.
 */
export async function runService<Tables>(definition: ServiceDefinition<Tables>): Promise<void> {
  let config: ServiceConfig;
  try {
    config = readServiceConfig(definition as ServiceDefinition<unknown>, process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${definition.name}: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({
    service: definition.name,
    level: config.logLevel,
    format: config.logFormat,
  });
  let running: RunningService;
  try {
    running = await startService(definition, config, logger);
  } catch (error) {
    logger.fatal(
      { err: error },
      `${definition.title} could not start: ${(error as Error).message}`,
    );
    logger.flush();
    process.exitCode = 1;
    return;
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal} received; finishing requests in flight, then exiting`);
    const deadline = setTimeout(() => {
      logger.error('Shutdown took longer than 10 s; exiting anyway');
      process.exit(1);
    }, 10_000);
    deadline.unref();
    running.stop().then(
      () => {
        logger.info('Stopped');
        logger.flush();
        process.exitCode = 0;
      },
      (error: unknown) => {
        logger.error({ err: error }, 'Error while stopping');
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}
