import fp from 'fastify-plugin';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TSchema } from 'typebox';

/** Where Prometheus scrapes; never rate limited. */
export const METRICS_PATH = '/metrics';

export interface RequestMetricsOptions {
  /** Short service name, the `service` label on every metric, e.g. `crm`. */
  service: string;
}

/**
 * The service's Prometheus registry as `app.metrics` (process metrics, requests answered and their
 * durations by route), served at `/metrics`.
 */
export const serveMetrics = fp<RequestMetricsOptions>(
  async (app, options) => {
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

    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      requests.inc({ method: request.method, route, status_code: reply.statusCode });
      durations.observe({ method: request.method, route }, reply.elapsedTime / 1000);
    });

    app.get(
      METRICS_PATH,
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
  },
  { name: 'serve-metrics' },
);

declare module 'fastify' {
  interface FastifyInstance {
    /** The service's Prometheus registry; services add their own metrics to it. */
    metrics: Registry;
  }
}
