import { randomUUID } from 'node:crypto';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { RateLimit } from './config.js';
import type { Logger } from './logging.js';
import { serveAllowedHostsOnly } from './http/allowed-hosts.js';
import { requireApiToken } from './http/authentication.js';
import { BODY_LIMIT_BYTES, refuseUnexpectedBodies } from './http/body-rules.js';
import { closeConnectionsOnShutdown } from './http/connections.js';
import { refuseCrossSiteWrites } from './http/cross-site-writes.js';
import { serveMetrics } from './http/metrics.js';
import { serveOpenApi } from './http/openapi.js';
import { answerRoutingError, answerWithProblems } from './http/problem-json.js';
import { serveProbes } from './http/probes.js';
import { limitRequestRate } from './http/rate-limit.js';
import { logRequests } from './http/request-log.js';
import { traceRequests } from './http/request-tracing.js';
import { sendSecurityHeaders } from './http/security-headers.js';
import { validateRequests } from './http/validation.js';

export { BODY_LIMIT_BYTES } from './http/body-rules.js';
export { problemResponses } from './http/openapi.js';

export interface HttpServerOptions {
  /** Short service name used in logs and metrics, e.g. `crm`. */
  service: string;
  /** Title and description for the OpenAPI document. */
  title: string;
  description: string;
  version: string;
  logger: Logger;
  /** Called by `GET /ready`; rejects when the service cannot do its job. */
  checkReady: () => Promise<void>;
  /** When set, every route except `/health` and `/ready` requires `Authorization: Bearer <token>`. */
  apiToken?: string | undefined;
  /** A token that may only read (GET and HEAD); only with `apiToken`. Default unset. */
  apiReadToken?: string | undefined;
  /** Host names served besides localhost, 127.0.0.1 and [::1] (`ALLOWED_HOSTS`). Default none. */
  allowedHosts?: readonly string[] | undefined;
  /**
   * Requests per client address and window on every route but `/health`, `/ready`, `/metrics` and
   * routes configured with `rateLimit: false`; beyond it, `429` with `Retry-After`. Default none.
   */
  rateLimit?: RateLimit | undefined;
}

export type HttpServer = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/**
 * A Fastify server with what every service shares, one plugin per concern (`./http/`): strict
 * validation, problem+json errors, tracing, security headers, a host allow-list, no cross-site
 * writes, metrics, rate limit, API tokens, OpenAPI at
 * `/openapi.json`, Swagger UI at `/docs`, `/health`, `/ready`, `/metrics`. Register the service's
 * routes on the result, inside `app.register`, so they appear in the docs.
 */
export async function createHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: BODY_LIMIT_BYTES,
    // One line per answered request comes from logRequests instead.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    // No child logger per request here: the tracing hook, the first to run, makes the one child
    // with the request id and the trace id (a pino child costs microseconds; two cost twice that).
    childLoggerFactory: (logger) => logger,
    return503OnClosing: true,
    // closeConnectionsOnShutdown does this, including connections that never sent a request.
    forceCloseConnections: false,
    frameworkErrors: answerRoutingError,
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as HttpServer;

  // Registered in the order that matters: hooks of one kind run in the order they are added, a
  // route keeps the error handler it was declared under, and a plugin with routes of its own
  // (Swagger UI, the service's routes) copies the hooks added before it.
  // Watches the server's sockets, not routes: its place does not matter.
  await app.register(closeConnectionsOnShutdown);
  // Before any route compiles its schemas.
  await app.register(validateRequests);
  // Before any route, so every route and the 404 answer problem+json.
  await app.register(answerWithProblems);
  // Before any route's plugin, which copies the body parsers it finds (text/plain removed).
  await app.register(refuseUnexpectedBodies);
  // The first onRequest hook: log lines of every later hook, 401 and 429 included, carry the trace.
  await app.register(traceRequests, { service: options.service });
  // An onResponse hook, after the span has its status: one line per answered request.
  await app.register(logRequests);
  // Before any hook that may refuse the request, so refusals carry the headers too.
  await app.register(sendSecurityHeaders);
  // Before anything reads the request: a foreign name or another site's write gets no further.
  await app.register(serveAllowedHostsOnly, {
    allowedHosts: options.allowedHosts,
    hasApiToken: Boolean(options.apiToken),
  });
  await app.register(refuseCrossSiteWrites);
  // Before authentication, so refused tokens count against the limit.
  await app.register(limitRequestRate, { rateLimit: options.rateLimit });
  // Before any route with its own plugin, the documentation's included, which copies its hooks.
  await app.register(requireApiToken, {
    apiToken: options.apiToken,
    apiReadToken: options.apiReadToken,
  });
  // Before the routes it documents: it learns each route as it is added.
  await app.register(serveOpenApi, {
    title: options.title,
    description: options.description,
    version: options.version,
    apiToken: options.apiToken,
  });
  // Documented routes, so after the OpenAPI plugin.
  await app.register(serveProbes, { checkReady: options.checkReady });
  await app.register(serveMetrics, { service: options.service });
  return app;
}
