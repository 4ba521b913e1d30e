import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { pathOf } from './send-problem.js';

/**
 * The request's URL for the log. A route that checks its callers itself (the webhook receiver) may
 * be reached at a URL whose query carries a secret of the sender's choosing: only its path is shown.
 */
function loggedUrl(request: FastifyRequest): string {
  if (!request.routeOptions.config?.authenticatesItself) return request.url;
  const path = pathOf(request);
  return path === request.url ? path : `${path}?***`;
}

/**
 * One line per answered request: `error` for 5xx answers, `debug` for the rest. Fastify's own
 * request logging is off (`disableRequestLogging`), so this is the only one.
 */
export const logRequests = fp(
  async (app) => {
    app.addHook('onResponse', async (request, reply) => {
      const level = reply.statusCode >= 500 ? 'error' : 'debug';
      const url = loggedUrl(request);
      request.log[level](
        { method: request.method, url, status: reply.statusCode, ms: reply.elapsedTime },
        `${request.method} ${url} → ${reply.statusCode}`,
      );
    });
  },
  { name: 'log-requests' },
);
