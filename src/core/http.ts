import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { Registry, Counter, Histogram, collectDefaultMetrics } from 'prom-client';
import { Type, type TSchema } from 'typebox';
import type { RateLimit } from './config.js';
import { HttpProblem, ProblemSchema, type Problem } from './errors.js';
import { describeValidationErrors } from './validation-messages.js';
import type { Logger } from './logging.js';
import { setUpTracing, SpanKind, startSpan, traceIdOf, type Span } from './tracing.js';

/** Largest request body accepted, in bytes (SPEC §6). */
export const BODY_LIMIT_BYTES = 64 * 1024;

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

type HttpPart = 'body' | 'querystring' | 'params' | 'headers';

function createValidators(): Record<HttpPart, Ajv> {
  const make = (coerceTypes: boolean) => {
    const ajv = new Ajv({
      allErrors: true,
      coerceTypes,
      removeAdditional: false,
      useDefaults: true,
      strict: false,
    });
    addFormats.default(ajv);
    return ajv;
  };
  // Query strings, path parameters and headers arrive as text and are coerced; bodies are JSON,
  // and a wrong type there is the client's mistake to hear about, not to be guessed at.
  const coercing = make(true);
  return { body: make(false), querystring: coercing, params: coercing, headers: coercing };
}

/** `{ 400: …, 404: … }` response entries documenting problem+json answers in OpenAPI. */
export function problemResponses(...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: describeStatus(status),
        content: { 'application/problem+json': { schema: ProblemSchema } },
      },
    ]),
  );
}

function describeStatus(status: number): string {
  switch (status) {
    case 400:
      return 'The request is malformed; `errors` lists each field at fault.';
    case 401:
      return 'A valid `Authorization: Bearer` token is required.';
    case 404:
      return 'No such resource.';
    case 409:
      return 'Conflicts with the current state.';
    case 413:
      return 'The body is larger than 64 KiB.';
    case 415:
      return 'The body must be `application/json`.';
    case 422:
      return 'Understood but cannot be processed.';
    case 429:
      return 'Too many requests from this address; retry after `Retry-After` seconds.';
    default:
      return STATUS_CODES[status] ?? 'Error';
  }
}

/**
 * Graceful shutdown for keep-alive clients: when the server closes, connections with no request in
 * flight are closed at once, and the others right after their answer is sent. Without this, one
 * idle keep-alive connection (or one opened and never used) holds `close()` open for minutes.
 */
function closeConnectionsOnShutdown(app: FastifyInstance): void {
  const busy = new Map<Socket, number>();
  const sockets = new Set<Socket>();
  let closing = false;
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      busy.delete(socket);
    });
  });
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    if (closing) response.setHeader('connection', 'close');
    response.once('close', () => {
      const left = (busy.get(socket) ?? 1) - 1;
      if (left > 0) busy.set(socket, left);
      else busy.delete(socket);
      if (closing && left <= 0) socket.destroySoon();
    });
  });
  app.addHook('preClose', async () => {
    closing = true;
    for (const socket of sockets) if (!busy.has(socket)) socket.destroy();
  });
}

/** Problem answers every JSON route can give, merged into each route's own. */
const COMMON_PROBLEMS = [400, 401, 413, 415, 429];

function validationProblem(error: FastifyError): HttpProblem {
  const location = error.validationContext ?? 'body';
  const errors = describeValidationErrors(error.validation ?? []).map(({ field, message }) => ({
    location,
    field,
    message,
  }));
  const detail =
    errors.length > 0
      ? errors.map((e) => `${e.location} ${e.field} ${e.message}`).join('; ')
      : error.message;
  return new HttpProblem(400, 'invalid_request', `Invalid request: ${detail}.`, { errors });
}

/** Maps Fastify's own errors (parsing, limits) to problems a client can act on. */
function frameworkProblem(error: FastifyError): HttpProblem | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpProblem(
        413,
        'body_too_large',
        `The request body is larger than ${BODY_LIMIT_BYTES} bytes; send less.`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpProblem(
        415,
        'unsupported_media_type',
        'Send the body as JSON with `Content-Type: application/json`.',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpProblem(
        400,
        'empty_body',
        'The body is empty but Content-Type says JSON; send a JSON object.',
      );
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpProblem(400, 'invalid_body', `The body could not be read: ${error.message}.`);
    default:
      break;
  }
  if (error.statusCode === 400 && error instanceof SyntaxError) {
    return new HttpProblem(400, 'invalid_json', `The body is not valid JSON: ${error.message}.`);
  }
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    return new HttpProblem(error.statusCode, 'bad_request', error.message);
  }
  return undefined;
}

function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: Problem) {
  return reply.code(problem.status).type('application/problem+json; charset=utf-8').send(problem);
}

function instanceOf(request: FastifyRequest): string {
  return request.url.split('?')[0] ?? request.url;
}

function isEmptyObject(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.keys(value).length === 0
  );
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Constant-time bearer token check: compares digests so lengths leak nothing. */
function hasValidToken(request: FastifyRequest, expected: Buffer): boolean {
  const header = request.headers.authorization ?? '';
  const bearer = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim();
  // Browsers cannot send a bearer token to a page; HTTP Basic with the token as password lets
  // the dashboard prompt for it natively (any user name).
  const basic = /^Basic\s+(.+)$/i.exec(header)?.[1];
  const password = basic
    ? Buffer.from(basic, 'base64').toString().split(':').slice(1).join(':')
    : undefined;
  const given = bearer ?? password;
  return given !== undefined && timingSafeEqual(digest(given), expected);
}

const PUBLIC_PATHS = new Set(['/health', '/ready']);
/** Probes and scrapes are never rate limited: a limit must not make a busy service look dead. */
const UNLIMITED_PATHS = new Set([...PUBLIC_PATHS, '/metrics']);

/**
 * Limits each client address to `max` requests per window with @fastify/rate-limit's in-memory
 * store (per process). It runs before authentication, so guessing tokens counts too.
 */
async function limitRequestRate(app: HttpServer, { max, windowMs }: RateLimit): Promise<void> {
  // Not global: its per-route hooks would run after the authentication hook.
  await app.register(rateLimit, { global: false });
  const checkRate = app.rateLimit({
    max,
    timeWindow: windowMs,
    errorResponseBuilder: (_request, context) => {
      const seconds = String(Math.max(1, Math.ceil(context.ttl / 1000)));
      return new HttpProblem(
        429,
        'rate_limited',
        `More than ${max} requests in ${windowMs} ms came from your address; wait ${seconds} s (Retry-After) and send this request again.`,
        {},
        { 'retry-after': seconds },
      );
    },
  });
  app.addHook('onRequest', async (request, reply) => {
    if (UNLIMITED_PATHS.has(instanceOf(request))) return;
    if (request.routeOptions.config?.rateLimit === false) return;
    await checkRate.call(app, request, reply);
  });
}

/**
 * A Fastify server with what every service shares: strict validation, one error handler answering
 * problem+json, OpenAPI at `/openapi.json`, Swagger UI at `/docs`, `/health`, `/ready`, `/metrics`.
 * Register the service's routes on the result, inside `app.register`, so they appear in the docs.
 */
export async function createHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: BODY_LIMIT_BYTES,
    // One line per answered request comes from the onResponse hook below instead.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    // closeConnectionsOnShutdown below does this, including connections that never sent a request.
    forceCloseConnections: false,
    // The router refuses malformed percent-encoding and over-long path segments before any hook
    // or error handler runs; without this they are answered as Fastify's own JSON, not a problem.
    frameworkErrors: (error, request, reply) => {
      const problem =
        error.code === 'FST_ERR_BAD_URL'
          ? new HttpProblem(
              400,
              'invalid_url',
              'The URL is not valid; percent-encode it as UTF-8 (RFC 3986).',
            )
          : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? new HttpProblem(
                414,
                'path_segment_too_long',
                'A path segment is too long; ids are 36-character UUIDs.',
              )
            : new HttpProblem(
                500,
                'internal_error',
                `The server failed to route the request; report request id ${request.id}.`,
              );
      if (problem.status >= 500) request.log.error({ err: error }, problem.detail);
      return sendProblem(request, reply, problem.toProblem(instanceOf(request)));
    },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as HttpServer;

  // Only JSON bodies: Fastify's built-in text/plain parser would turn a typo'd header into a
  // confusing validation error instead of a clear 415.
  app.removeContentTypeParser('text/plain');

  closeConnectionsOnShutdown(app);

  const validators = createValidators();
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const ajv = validators[(httpPart ?? 'body') as HttpPart] ?? validators.body;
    return ajv.compile(schema);
  });

  const registry = new Registry();
  registry.setDefaultLabels({ service: options.service });
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route and status code.',
    labelNames: ['method', 'route', 'status_code'],
    registers: [registry],
  });
  const durations = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by method and route.',
    labelNames: ['method', 'route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  app.decorate('metrics', registry);

  // Every request is a span continuing the caller's W3C trace; its log lines carry the trace id.
  setUpTracing(options.service);
  app.decorateRequest('span', undefined as unknown as Span);
  app.addHook('onRequest', async (request) => {
    const traceparent = request.headers.traceparent;
    request.span = startSpan(
      `${request.method} ${request.routeOptions.url ?? 'unmatched'}`,
      SpanKind.SERVER,
      typeof traceparent === 'string' ? traceparent : undefined,
    );
    request.log = request.log.child({ trace_id: traceIdOf(request.span) });
  });

  app.addHook('onResponse', async (request, reply) => {
    request.span?.setAttribute('http.response.status_code', reply.statusCode);
    request.span?.end();
    const route = request.routeOptions.url ?? 'unmatched';
    requests.inc({ method: request.method, route, status_code: reply.statusCode });
    durations.observe({ method: request.method, route }, reply.elapsedTime / 1000);
    const level = reply.statusCode >= 500 ? 'error' : 'debug';
    request.log[level](
      { method: request.method, url: request.url, status: reply.statusCode, ms: reply.elapsedTime },
      `${request.method} ${request.url} → ${reply.statusCode}`,
    );
  });

  if (options.rateLimit && options.rateLimit.max > 0) {
    await limitRequestRate(app, options.rateLimit);
  }

  if (options.apiToken) {
    const expected = digest(options.apiToken);
    app.addHook('onRequest', async (request, reply) => {
      if (PUBLIC_PATHS.has(instanceOf(request))) return;
      // Routes that authenticate callers themselves (signed webhooks) opt out of the bearer token.
      if ((request.routeOptions.config as { authenticatesItself?: boolean }).authenticatesItself) {
        return;
      }
      if (!hasValidToken(request, expected)) {
        const wantsPage = (request.headers.accept ?? '').includes('text/html');
        reply.header(
          'www-authenticate',
          wantsPage ? 'Basic realm="Mini Integration Platform", charset="UTF-8"' : 'Bearer',
        );
        const problem = new HttpProblem(
          401,
          'unauthorized',
          'Send `Authorization: Bearer <API_TOKEN>` with the token this service was started with (browsers: any user name, the token as password).',
        );
        return sendProblem(request, reply, problem.toProblem(instanceOf(request)));
      }
    });
  }

  app.setErrorHandler((error: FastifyError, request, reply) => {
    let problem: HttpProblem | undefined;
    if (error instanceof HttpProblem) problem = error;
    else if (error.validation) problem = validationProblem(error);
    else problem = frameworkProblem(error);
    if (!problem) {
      request.log.error({ err: error }, 'Unhandled error while answering a request');
      problem = new HttpProblem(
        500,
        'internal_error',
        `The server failed to answer; retry later, and report request id ${request.id} if it persists.`,
      );
    } else if (problem.status >= 500) {
      request.log.error({ err: error }, problem.detail);
    }
    reply.headers(problem.headers);
    return sendProblem(request, reply, problem.toProblem(instanceOf(request)));
  });

  // A route without a body schema takes no body: fields sent to it would be ignored without a word
  // (`{"customer_id": …}` to replay-all would replay them all). Raw bodies are their route's own.
  app.addHook('preValidation', async (request) => {
    const body = request.body;
    if (request.routeOptions.schema?.body !== undefined || body === undefined) return;
    if (Buffer.isBuffer(body) || isEmptyObject(body)) return;
    throw new HttpProblem(
      400,
      'unexpected_body',
      `${request.method} ${instanceOf(request)} takes no body; send none (or {}).`,
    );
  });

  app.setNotFoundHandler((request, reply) => {
    const problem = new HttpProblem(
      404,
      'route_not_found',
      `There is no route ${request.method} ${instanceOf(request)}; see /docs for the routes this service has.`,
    );
    return sendProblem(request, reply, problem.toProblem(instanceOf(request)));
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: options.title, description: options.description, version: options.version },
      ...(options.apiToken
        ? {
            components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
            security: [{ bearer: [] }],
          }
        : {}),
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  // Every JSON route answers these problems too; documenting them once here keeps the routes short.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs') || route.schema?.hide) return;
    const schema = (route.schema ??= {});
    const response = (schema.response ??= {}) as Record<string, unknown>;
    for (const [status, entry] of Object.entries(problemResponses(...COMMON_PROBLEMS))) {
      response[status] ??= entry;
    }
  });

  app.get(
    '/openapi.json',
    { schema: { hide: true } },
    async () => app.swagger() as unknown as Record<string, unknown>,
  );

  app.get(
    '/health',
    {
      schema: {
        tags: ['operations'],
        summary: 'The process is alive',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/ready',
    {
      schema: {
        tags: ['operations'],
        summary: 'The service can do its job (its database answers)',
        response: {
          200: Type.Object({ status: Type.Literal('ready') }),
          ...problemResponses(503),
        },
      },
    },
    async (request, reply) => {
      try {
        await options.checkReady();
        return { status: 'ready' as const };
      } catch (error) {
        request.log.warn({ err: error }, 'Readiness check failed');
        const problem = new HttpProblem(
          503,
          'not_ready',
          `Not ready: ${(error as Error).message}. Check the database and the service's logs.`,
        );
        return sendProblem(request, reply, problem.toProblem('/ready')) as never;
      }
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics in the text exposition format',
        produces: ['text/plain'],
        response: { 200: { description: 'Prometheus text format', type: 'string' } as TSchema },
      },
    },
    async (_request, reply) => {
      reply.type(registry.contentType);
      return registry.metrics();
    },
  );

  return app;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** This request's span; pass `traceparentOf(request.span)` to carry the trace onwards. */
    span: Span;
  }
  interface FastifyInstance {
    /** The service's Prometheus registry; services add their own metrics to it. */
    metrics: Registry;
  }
}
