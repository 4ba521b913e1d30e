import { readAllowedHosts, readRateLimit } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logging.js';
import {
  createServiceApp,
  type ServiceDefinition,
  type ServiceRuntime,
} from '../../src/core/service.js';
import type { HttpServer } from '../../src/core/http.js';
import { createTestDatabase, type ServiceName, type TestDatabase } from './databases.js';

export interface TestApp<Tables> {
  app: HttpServer;
  runtime: ServiceRuntime;
  database: TestDatabase<Tables>;
  close(): Promise<void>;
}

/**
 * The service's app on a fresh test database, for `app.inject`; or on `database`, which its
 * `close()` then leaves in place for the caller (e.g. to restart the service on the same data).
 */
export async function createTestApp<Tables>(
  definition: ServiceDefinition<Tables>,
  options: {
    apiToken?: string;
    apiReadToken?: string;
    env?: Record<string, string | undefined>;
    database?: TestDatabase<Tables>;
  } = {},
): Promise<TestApp<Tables>> {
  const ownsDatabase = options.database === undefined;
  const database =
    options.database ?? (await createTestDatabase<Tables>(definition.name as ServiceName));
  const logger = createLogger({
    service: definition.name,
    level: process.env.TEST_LOG_LEVEL ?? 'silent',
  });
  const { app, runtime } = await createServiceApp(definition, {
    database,
    logger,
    apiToken: options.apiToken,
    apiReadToken: options.apiReadToken,
    allowedHosts: readAllowedHosts(options.env ?? {}),
    // In-process tests send thousands of requests a second from one address: no limit unless the
    // test sets RATE_LIMIT_MAX (the services' default is 1000 per second).
    rateLimit: readRateLimit({ RATE_LIMIT_MAX: '0', ...options.env }),
    env: options.env ?? {},
  });
  return {
    app,
    runtime,
    database,
    close: async () => {
      await runtime.stop?.();
      await app.close();
      if (ownsDatabase) await database.drop();
    },
  };
}

/** Asserts the shape every error answer has: RFC 9457 problem+json with an actionable detail. */
export function expectProblem(
  response: { statusCode: number; headers: Record<string, unknown>; json(): unknown },
  status: number,
): Record<string, unknown> {
  const body = response.json() as Record<string, unknown>;
  if (response.statusCode !== status) {
    throw new Error(`expected ${status}, got ${response.statusCode}: ${JSON.stringify(body)}`);
  }
  if (!String(response.headers['content-type']).startsWith('application/problem+json')) {
    throw new Error(`expected problem+json, got ${String(response.headers['content-type'])}`);
  }
  for (const field of ['type', 'title', 'status', 'detail', 'code']) {
    if (!(field in body)) throw new Error(`problem lacks "${field}": ${JSON.stringify(body)}`);
  }
  if (body.status !== status) throw new Error(`problem.status ${String(body.status)} ≠ ${status}`);
  if (JSON.stringify(body).includes('    at ')) throw new Error('problem leaks a stack trace');
  return body;
}
