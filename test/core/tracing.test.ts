import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { waitUntil } from '../support/platform.js';

type Tracing = typeof import('../../src/core/tracing.js');
type SpanKind = import('../../src/core/tracing.js').SpanKind;
type Tracer = ReturnType<Tracing['setUpTracing']>;

/** A fresh copy of the tracing module: it sets up OpenTelemetry once per process. */
async function loadTracing(env: Record<string, string>) {
  vi.resetModules();
  for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value);
  const tracing = await import('../../src/core/tracing.js');
  const tracer = tracing.setUpTracing('test');
  // Spans of the `test` service unless a test names another's tracer.
  return {
    ...tracing,
    startSpan: (name: string, kind: SpanKind, traceparent?: string | null, of: Tracer = tracer) =>
      tracing.startSpan(name, kind, traceparent, of),
  };
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const parts = (traceparent: string) => traceparent.split('-');
let collector: Server | undefined;

afterEach(async () => {
  vi.unstubAllEnvs();
  if (collector) await new Promise((resolve) => collector!.close(resolve));
  collector = undefined;
});

describe.each([
  ['when spans are not exported', false],
  ['when spans are exported', true],
])('a request span %s', (_title, exported) => {
  const load = async () => {
    if (!exported) return loadTracing({ OTEL_EXPORTER_OTLP_ENDPOINT: '' });
    collector = createServer((request, response) => response.end());
    await new Promise<void>((resolve) => collector!.listen(0, '127.0.0.1', resolve));
    const port = (collector.address() as AddressInfo).port;
    return loadTracing({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` });
  };

  it("continues the caller's trace with a span of its own, keeping the sampled flag", async () => {
    const { startSpan, traceparentOf, traceIdOf, SpanKind } = await load();
    for (const flags of ['01', '00']) {
      const span = startSpan('GET /x', SpanKind.SERVER, `00-${TRACE_ID}-00f067aa0ba902b7-${flags}`);
      expect(traceIdOf(span)).toBe(TRACE_ID);
      const [version, traceId, spanId, sampled] = parts(traceparentOf(span));
      expect([version, traceId, sampled]).toEqual(['00', TRACE_ID, flags]);
      expect(spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(spanId).not.toBe('00f067aa0ba902b7');
      span.end();
    }
  });

  it("passes on only the sampled bit of the caller's flags, so the header stays well formed", async () => {
    const { startSpan, traceparentOf, SpanKind } = await load();
    for (const [flags, passed] of [
      ['11', '01'],
      ['10', '00'],
      ['ff', '01'],
    ] as const) {
      const span = startSpan('GET /x', SpanKind.SERVER, `00-${TRACE_ID}-00f067aa0ba902b7-${flags}`);
      expect(traceparentOf(span)).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-${passed}$`));
      span.end();
    }
  });

  it('starts a new sampled trace when there is no caller trace, or it is malformed', async () => {
    const { startSpan, traceparentOf, SpanKind } = await load();
    const seen = new Set<string>();
    for (const traceparent of [undefined, 'nonsense', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`]) {
      const span = startSpan('GET /x', SpanKind.SERVER, traceparent);
      const [, traceId, spanId, sampled] = parts(traceparentOf(span));
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(traceId).not.toBe('0'.repeat(32));
      expect(spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(sampled).toBe('01');
      seen.add(traceId!);
      span.end();
    }
    expect(seen.size).toBe(3);
  });
});

it('exports ended spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set', async () => {
  const posted: string[] = [];
  collector = createServer((request, response) => {
    posted.push(request.url ?? '');
    request.resume().on('end', () => response.end());
  });
  await new Promise<void>((resolve) => collector!.listen(0, '127.0.0.1', resolve));
  const port = (collector.address() as AddressInfo).port;
  const { startSpan, SpanKind } = await loadTracing({
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_BSP_SCHEDULE_DELAY: '50',
  });
  startSpan('POST /customers', SpanKind.SERVER).end();
  await waitUntil(async () => posted.length > 0, 10_000, 'the span export');
  expect(posted[0]).toBe('/v1/traces');
});

it('lets a sampler set by OTEL_TRACES_SAMPLER decide the sampled flag, with no collector', async () => {
  const { startSpan, traceparentOf, SpanKind } = await loadTracing({
    OTEL_EXPORTER_OTLP_ENDPOINT: '',
    OTEL_TRACES_SAMPLER: 'always_off',
  });
  const span = startSpan('GET /x', SpanKind.SERVER);
  expect(traceparentOf(span)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  span.end();
});

it("exports each service's spans under its own name when several share a process (npm start)", async () => {
  const bodies: string[] = [];
  collector = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      bodies.push(body);
      response.end();
    });
  });
  await new Promise<void>((resolve) => collector!.listen(0, '127.0.0.1', resolve));
  const port = (collector.address() as AddressInfo).port;
  const tracing = await loadTracing({
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_BSP_SCHEDULE_DELAY: '50',
  });
  const { startSpan, setUpTracing, SpanKind } = tracing;
  startSpan('POST /customers', SpanKind.SERVER, undefined, setUpTracing('crm')).end();
  startSpan('POST /package-requests', SpanKind.SERVER, undefined, setUpTracing('inventory')).end();
  const exported = () => bodies.join('\n');
  await waitUntil(
    async () => exported().includes('"crm"') && exported().includes('"inventory"'),
    10_000,
    'both services exported',
  );
  // Each span is under the resource of the service that made it.
  for (const [service, span] of [
    ['crm', 'POST /customers'],
    ['inventory', 'POST /package-requests'],
  ] as const) {
    const body = bodies.find((posted) => posted.includes(`"${span}"`));
    expect(body, span).toContain(`{"key":"service.name","value":{"stringValue":"${service}"}}`);
  }
});
