import closeWithGrace from 'close-with-grace';
import { ConfigError } from './config.js';
import { createLogger, type Logger } from './logging.js';
import {
  readServiceConfig,
  startService,
  type RunningService,
  type ServiceConfig,
  type ServiceDefinition,
} from './service.js';

/** SIGTERM from Docker, Kubernetes or systemd; SIGINT from Ctrl-C. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Every event close-with-grace would act on by itself: the stop signals are handled in
 * `runServices`, and other signals and crashes keep Node's own handling.
 */
const NOT_FOR_CLOSE_WITH_GRACE: closeWithGrace.AllEvents[] = [
  ...STOP_SIGNALS,
  'SIGHUP',
  'SIGQUIT',
  'SIGILL',
  'SIGTRAP',
  'SIGABRT',
  'SIGBUS',
  'SIGFPE',
  'SIGSEGV',
  'SIGUSR2',
  'uncaughtException',
  'unhandledRejection',
  'beforeExit',
];

interface Hosted {
  definition: ServiceDefinition<unknown>;
  config: ServiceConfig;
  logger: Logger;
}

/** Reads each service's settings; a bad one exits 1 with one line naming its service. */
function readConfigs(definitions: readonly ServiceDefinition<unknown>[]): Hosted[] {
  return definitions.map((definition) => {
    let config: ServiceConfig;
    try {
      config = readServiceConfig(definition, process.env);
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
    return { definition, config, logger };
  });
}

/** Stops every service at once, each saying so; rejects with the first error while stopping. */
async function stopAll(running: readonly (Hosted & { service: RunningService })[]): Promise<void> {
  const stopped = await Promise.allSettled(running.map(({ service }) => service.stop()));
  let failed: unknown;
  stopped.forEach((outcome, i) => {
    const { logger } = running[i]!;
    if (outcome.status === 'rejected') {
      failed ??= outcome.reason;
      logger.error({ err: outcome.reason }, 'Error while stopping');
    } else logger.info('Stopped');
    logger.flush();
  });
  if (failed !== undefined) throw failed;
}

/**
 * Entry point of a process hosting one service (`npm run start:crm`) or several (`npm start`:
 * each on its own port and database, talking HTTP as when apart). Reads the environment, starts
 * them together, and on SIGINT or SIGTERM stops taking requests, finishes those in flight
 * (abandoning outgoing calls at the deadline) and exits 0; 1 on an error while stopping, or when
 * a stop is stuck past the deadline. A bad setting exits 1 with one line. When one service cannot
 * start, the others are stopped and the process exits 1: a platform missing a service is broken.
 */
export async function runServices<Tables extends unknown[]>(definitions: {
  [K in keyof Tables]: ServiceDefinition<Tables[K]>;
}): Promise<void> {
  // Each service's tables are its own business: here they are only passed through.
  const hosted = readConfigs(definitions as readonly ServiceDefinition<unknown>[]);
  const shutdownTimeoutMs = Math.max(...hosted.map(({ config }) => config.shutdownTimeoutMs));
  // A stop signal may come while the services start (a slow database, a migration): it is taken
  // at once and acted on when every start has settled, so what already runs stops gracefully.
  let stopSignal: (typeof STOP_SIGNALS)[number] | undefined;
  /** `now` is set once every start has settled: it stops what runs and exits. */
  const stopping: { now?: () => void; stuckStart?: NodeJS.Timeout } = {};
  for (const signal of STOP_SIGNALS) {
    // Not close-with-grace's own signal handling: it exits 1 on a repeated signal, and a stop
    // signal can arrive twice (Ctrl-C under `npm start` reaches the process from the terminal and
    // again from npm; systemd signals the whole group). A repeat is ignored; the deadline is the
    // only forced exit.
    process.on(signal, () => {
      if (stopSignal) return;
      stopSignal = signal;
      for (const { logger } of hosted) {
        logger.info(`${signal} received; finishing requests in flight, then exiting`);
      }
      if (stopping.now) return stopping.now();
      // A start that never settles (a database that does not answer) must not outlive the
      // deadline; once it settles, close-with-grace keeps its own.
      stopping.stuckStart = setTimeout(() => {
        for (const { logger } of hosted) {
          logger.error(`Still starting ${shutdownTimeoutMs} ms after ${signal}; exiting`);
          logger.flush();
        }
        process.exit(1);
      }, shutdownTimeoutMs).unref();
    });
  }
  const started = await Promise.allSettled(
    hosted.map(({ definition, config, logger }) => startService(definition, config, logger)),
  );
  clearTimeout(stopping.stuckStart);
  const running: (Hosted & { service: RunningService })[] = [];
  started.forEach((outcome, i) => {
    const { definition, logger } = hosted[i]!;
    if (outcome.status === 'fulfilled') running.push({ ...hosted[i]!, service: outcome.value });
    else {
      const error = outcome.reason as Error;
      logger.fatal({ err: error }, `${definition.title} could not start: ${error.message}`);
      logger.flush();
    }
  });
  const failedToStart = running.length < hosted.length;
  const grace = closeWithGrace(
    {
      // Calls in flight are abandoned before this (RunningService.stop): only a stop stuck
      // elsewhere, such as on a database that does not answer, meets it and exits 1.
      delay: shutdownTimeoutMs,
      skip: NOT_FOR_CLOSE_WITH_GRACE,
      logger: false,
      onTimeout: () => {
        for (const { logger } of hosted) {
          logger.error(
            `Shutdown took longer than SHUTDOWN_TIMEOUT_MS (${shutdownTimeoutMs} ms); exiting anyway`,
          );
          logger.flush();
        }
      },
    },
    async () => {
      await stopAll(running);
      // A platform missing a service is broken, even once what did start has stopped cleanly.
      if (failedToStart) throw new Error('a service could not start');
    },
  );
  stopping.now = () => grace.close();
  if (failedToStart || stopSignal) stopping.now();
}
