import { STATUS_CODES } from 'node:http';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import fp from 'fastify-plugin';
import { ProblemSchema } from '../errors.js';

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
    case 403:
      return 'Refused whatever the body: a browser sent it from another site, or the token may only read.';
    case 404:
      return 'No such resource.';
    case 409:
      return 'Conflicts with the current state.';
    case 412:
      return 'The resource changed since the version `If-Match` names; read it again.';
    case 413:
      return 'The body is larger than 64 KiB.';
    case 415:
      return 'The body must be `application/json`.';
    case 421:
      return 'The `Host` is not one this service answers to; see `ALLOWED_HOSTS`.';
    case 422:
      return 'Understood but cannot be processed.';
    case 429:
      return 'Too many requests from this address; retry after `Retry-After` seconds.';
    default:
      return STATUS_CODES[status] ?? 'Error';
  }
}

/** Problem answers every JSON route can give, merged into each route's own. */
const COMMON_PROBLEMS = [400, 401, 403, 413, 415, 421, 429];

export interface OpenApiOptions {
  /** Title, description and version of the OpenAPI document. */
  title: string;
  description: string;
  version: string;
  /** When set, the document says every operation needs `Authorization: Bearer`. Default unset. */
  apiToken?: string | undefined;
}

/**
 * The OpenAPI 3.0.3 document of every route registered after this plugin, at `/openapi.json`,
 * and Swagger UI at `/docs`.
 */
export const serveOpenApi = fp<OpenApiOptions>(
  async (app, options) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: { title: options.title, description: options.description, version: options.version },
        ...(options.apiToken
          ? {
              components: {
                securitySchemes: {
                  bearer: {
                    type: 'http',
                    scheme: 'bearer',
                    description:
                      '`API_TOKEN` may call everything; `API_READ_TOKEN` only GET and HEAD (403 otherwise).',
                  },
                },
              },
              security: [{ bearer: [] }],
            }
          : {}),
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });

    // Every JSON route answers these problems too; documenting them once here keeps routes short.
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
  },
  { name: 'serve-openapi' },
);
