import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpProblem } from '../errors.js';
import { PROBE_PATHS } from './probes.js';
import { pathOf, sendProblem } from './send-problem.js';

/** What a caller may do: `admin` everything, `read` only GET and HEAD. */
export type AccessScope = 'admin' | 'read';

/** Methods a read-only token may use. */
const READ_METHODS = new Set(['GET', 'HEAD']);

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** The token a request carries, as a digest: bearer, or the password of HTTP Basic. */
function givenTokenDigest(request: FastifyRequest): Buffer | undefined {
  const header = request.headers.authorization ?? '';
  const bearer = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim();
  // Browsers cannot send a bearer token to a page; HTTP Basic with the token as password lets
  // the dashboard prompt for it natively (any user name).
  const basic = /^Basic\s+(.+)$/i.exec(header)?.[1];
  const password = basic
    ? Buffer.from(basic, 'base64').toString().split(':').slice(1).join(':')
    : undefined;
  const given = bearer ?? password;
  return given === undefined ? undefined : digest(given);
}

/** Constant-time comparison of digests, so neither content nor length leaks. */
function matches(given: Buffer | undefined, expected: Buffer | undefined): boolean {
  return given !== undefined && expected !== undefined && timingSafeEqual(given, expected);
}

export interface ApiTokenOptions {
  /** The admin token; when unset, no route asks for one. Default unset. */
  apiToken?: string | undefined;
  /** A token that may only read (GET and HEAD); used only with `apiToken`. Default unset. */
  apiReadToken?: string | undefined;
}

function unauthorized(request: FastifyRequest): HttpProblem {
  const wantsPage = (request.headers.accept ?? '').includes('text/html');
  return new HttpProblem(
    401,
    'unauthorized',
    'Send `Authorization: Bearer <API_TOKEN>` (or API_READ_TOKEN to read) with the token this service was started with (browsers: any user name, the token as password).',
    {},
    {
      'www-authenticate': wantsPage
        ? 'Basic realm="Mini Integration Platform", charset="UTF-8"'
        : 'Bearer',
    },
  );
}

function adminOnly(request: FastifyRequest): HttpProblem {
  const what = READ_METHODS.has(request.method)
    ? 'this route reveals secrets'
    : `${request.method} changes state`;
  return new HttpProblem(
    403,
    'insufficient_scope',
    `The token you sent is API_READ_TOKEN, which may only read; ${what}, so it needs the admin token, API_TOKEN.`,
    { required_scope: 'admin', scope: 'read' },
    { 'www-authenticate': 'Bearer error="insufficient_scope", scope="admin"' },
  );
}

/**
 * Requires a token (`Authorization: Bearer <token>`, or HTTP Basic with the token as password) on
 * every route but the probes and routes configured with `authenticatesItself: true`; else `401`.
 * The admin token may do anything; the read token only GET and HEAD, on routes not marked
 * `adminOnly` (else `403`). Sets `request.accessScope` for routes that show what a caller may do.
 */
export const requireApiToken = fp<ApiTokenOptions>(
  async (app, options) => {
    app.decorateRequest('accessScope', 'admin');
    if (!options.apiToken) return;
    const admin = digest(options.apiToken);
    const reader = options.apiReadToken ? digest(options.apiReadToken) : undefined;
    app.addHook('onRequest', async (request, reply) => {
      if (PROBE_PATHS.has(pathOf(request))) return;
      if (request.routeOptions.config.authenticatesItself) return;
      const given = givenTokenDigest(request);
      // Both compared every time, so timing does not tell which one nearly matched.
      const isAdmin = matches(given, admin);
      const isReader = matches(given, reader);
      if (isAdmin) return;
      if (!isReader) return sendProblem(request, reply, unauthorized(request));
      request.accessScope = 'read';
      if (READ_METHODS.has(request.method) && !request.routeOptions.config.adminOnly) return;
      return sendProblem(request, reply, adminOnly(request));
    });
  },
  { name: 'require-api-token' },
);

declare module 'fastify' {
  interface FastifyRequest {
    /** What the caller may do, from the token it sent; `admin` when the service has no token. */
    accessScope: AccessScope;
  }
  interface FastifyContextConfig {
    /**
     * The route checks its callers itself (e.g. signed webhooks), so no API token is asked of
     * them. Default false.
     */
    authenticatesItself?: boolean;
    /** Only the admin token may call the route, even to read (e.g. it shows secrets). Default false. */
    adminOnly?: boolean;
  }
}
