import fp from 'fastify-plugin';

/**
 * One line per answered request: `error` for 5xx answers, `debug` for the rest. Fastify's own
 * request logging is off (`disableRequestLogging`), so this is the only one.
 */
export const logRequests = fp(
  async (app) => {
    app.addHook('onResponse', async (request, reply) => {
      const level = reply.statusCode >= 500 ? 'error' : 'debug';
      request.log[level](
        {
          method: request.method,
          url: request.url,
          status: reply.statusCode,
          ms: reply.elapsedTime,
        },
        `${request.method} ${request.url} → ${reply.statusCode}`,
      );
    });
  },
  { name: 'log-requests' },
);
