import fp from 'fastify-plugin';
import { setUpTracing, SpanKind, startSpan, traceIdOf, type Span } from '../tracing.js';

export interface RequestTracingOptions {
  /** Service name the spans are exported under, e.g. `crm` (unless `OTEL_SERVICE_NAME` is set). */
  service: string;
}

/** Every request is a span continuing the caller's W3C trace; its log lines carry the trace id. */
export const traceRequests = fp<RequestTracingOptions>(
  async (app, options) => {
    const tracer = setUpTracing(options.service);
    app.decorateRequest('span', undefined as unknown as Span);
    app.addHook('onRequest', async (request) => {
      const traceparent = request.headers.traceparent;
      request.span = startSpan(
        `${request.method} ${request.routeOptions.url ?? 'unmatched'}`,
        SpanKind.SERVER,
        typeof traceparent === 'string' ? traceparent : undefined,
        tracer,
      );
      // The request's one child logger (createHttpServer makes none).
      request.log = request.log.child({ reqId: request.id, trace_id: traceIdOf(request.span) });
    });
    app.addHook('onResponse', async (request, reply) => {
      request.span?.setAttribute('http.response.status_code', reply.statusCode);
      request.span?.end();
    });
  },
  { name: 'trace-requests' },
);

declare module 'fastify' {
  interface FastifyRequest {
    /** This request's span; pass `traceparentOf(request.span)` to carry the trace onwards. */
    span: Span;
  }
}
