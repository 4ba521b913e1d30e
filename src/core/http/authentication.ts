import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpProblem } from '../errors.js';
import { PROBE_PATHS } from './probes.js';
import { pathOf, sendProblem } from './send-problem.js';

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

export interface ApiTokenOptions {
  /** The token callers must send; when unset, no route asks for one. Default unset. */
  apiToken?: string | undefined;
}

/**
 * Requires `Authorization: Bearer <token>` (or HTTP Basic with the token as password) on every
 * route but the probes and routes configured with `authenticatesItself: true`; else `401`.
 */
export const requireApiToken = fp<ApiTokenOptions>(
  async (app, options) => {
    if (!options.apiToken) return;
    const expected = digest(options.apiToken);
    app.addHook('onRequest', async (request, reply) => {
      if (PROBE_PATHS.has(pathOf(request))) return;
      if (request.routeOptions.config.authenticatesItself) return;
      if (hasValidToken(request, expected)) return;
      const wantsPage = (request.headers.accept ?? '').includes('text/html');
      const problem = new HttpProblem(
        401,
        'unauthorized',
        'Send `Authorization: Bearer <API_TOKEN>` with the token this service was started with (browsers: any user name, the token as password).',
        {},
        {
          'www-authenticate': wantsPage
            ? 'Basic realm="Mini Integration Platform", charset="UTF-8"'
            : 'Bearer',
        },
      );
      return sendProblem(request, reply, problem);
    });
  },
  { name: 'require-api-token' },
);

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route checks its callers itself (e.g. signed webhooks), so no API token is asked of
     * them. Default false.
     */
    authenticatesItself?: boolean;
  }
}
