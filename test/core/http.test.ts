import { afterEach, describe, expect, it } from 'vitest';
import { crmService } from '../../src/crm/service.js';
import { inventoryService } from '../../src/inventory/service.js';
import { integrationService } from '../../src/integration/service.js';
import { createHttpServer } from '../../src/core/http.js';
import { createLogger } from '../../src/core/logging.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';

const services = [
  {
    definition: crmService,
    routes: [
      'GET /customers',
      'POST /customers',
      'GET /customers/{id}',
      'PATCH /customers/{id}',
      'DELETE /customers/{id}',
      'GET /customer-states',
      'GET /customer-states/{id}',
      'GET /events',
      'GET /asyncapi.json',
      'POST /webhook-endpoints',
      'GET /webhook-endpoints',
      'GET /webhook-endpoints/{id}',
      'DELETE /webhook-endpoints/{id}',
      'GET /webhook-endpoints/{id}/secret',
      'POST /webhook-endpoints/{id}/rotate-secret',
      'POST /webhook-endpoints/{id}/enable',
      'GET /webhook-endpoints/{id}/attempts',
      'GET /webhook-endpoints/{id}/messages',
      'POST /webhook-endpoints/{id}/messages/replay',
    ],
    postPath: '/customers',
  },
  {
    definition: inventoryService,
    routes: [
      'GET /package-requests',
      'GET /package-requests/by-customer',
      'POST /package-requests',
      'POST /package-requests/batch',
      'GET /package-requests/{id}',
      'PATCH /package-requests/{id}',
      'POST /package-requests/{id}/cancel',
      'POST /package-requests/{id}/ship',
    ],
    postPath: '/package-requests',
  },
  {
    definition: integrationService,
    routes: [
      'GET /api/status',
      'GET /api/dashboard',
      'GET /api/deliveries',
      'GET /api/dead-letters',
      'POST /api/dead-letters/{customerId}/replay',
      'POST /api/dead-letters/replay',
      'GET /api/customers/lookup',
      'POST /api/delivery/pause',
      'POST /api/delivery/resume',
      'POST /api/resync',
      'GET /api/customers/{customerId}/timeline',
      'POST /api/customers/{id}/resync',
      'POST /api/audits',
      'GET /api/audits',
      'GET /api/audits/{id}',
      'POST /api/alert-endpoints',
      'GET /api/alert-endpoints',
      'DELETE /api/alert-endpoints/{id}',
      'POST /webhooks/crm',
    ],
    postPath: '/api/deliveries',
  },
] as const;

/** The success of the admin API's POSTs with a body that do not answer 200. */
const ADMIN_POST_STATUS: Record<string, string> = {
  '/api/audits': '202',
  '/api/alert-endpoints': '201',
};

let t: TestApp<unknown> | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe.each(services)('$definition.title', ({ definition, routes, postPath }) => {
  const start = async (options: { apiToken?: string } = {}) => {
    t = (await createTestApp(definition as never, options)) as TestApp<unknown>;
    return t.app;
  };

  it('documents every route, body, response and error in /openapi.json (OpenAPI 3)', async () => {
    const app = await start();
    const response = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(response.statusCode).toBe(200);
    const doc = response.json();
    expect(doc.openapi).toMatch(/^3\./);
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(
      ([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual(
      [...routes, 'GET /health', 'GET /ready', 'GET /metrics'].sort(),
    );
    for (const [path, methods] of Object.entries(doc.paths as Record<string, object>)) {
      for (const [method, operation] of Object.entries(methods as Record<string, any>)) {
        const statuses = Object.keys(operation.responses);
        expect(statuses, `${method} ${path}`).toEqual(
          expect.arrayContaining(['400', '413', '415']),
        );
        expect(
          operation.responses['400'].content['application/problem+json'].schema.properties.detail,
        ).toBeDefined();
        if (method === 'post' && operation.requestBody) {
          expect(
            operation.requestBody.content['application/json'].schema.additionalProperties,
          ).toBe(false);
          // A create answers 201, a batch of creates 200 with a status per item; an admin action
          // (a filtered replay) 200, one started in the background (an audit) 202, and a new alert
          // endpoint 201.
          expect(statuses).toEqual(
            path.startsWith('/api/')
              ? expect.arrayContaining([ADMIN_POST_STATUS[path] ?? '200'])
              : expect.arrayContaining([path.endsWith('/batch') ? '200' : '201', '409']),
          );
        }
      }
    }
  });

  it('serves Swagger UI at /docs', async () => {
    const app = await start();
    const response = await app.inject({ method: 'GET', url: '/docs/' });
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain('swagger');
  });

  it('answers /health, /ready and Prometheus /metrics', async () => {
    const app = await start();
    expect((await app.inject({ method: 'GET', url: '/health' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ method: 'GET', url: '/ready' })).json()).toEqual({
      status: 'ready',
    });
    await app.inject({ method: 'GET', url: postPath });
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.headers['content-type']).toContain('text/plain');
    expect(metrics.body).toContain('# TYPE http_requests_total counter');
    expect(metrics.body).toMatch(
      new RegExp(
        `http_requests_total\\{method="GET",route="${postPath}",status_code="200",service="${definition.name}"\\} 1`,
      ),
    );
    expect(metrics.body).toContain('process_resident_memory_bytes');
  });

  it('turns /ready to 503 when the database is unreachable, while /health stays 200', async () => {
    const app = await start();
    await t!.database.close();
    expectProblem(await app.inject({ method: 'GET', url: '/ready' }), 503);
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    // drop() closes again; Kysely tolerates that.
  });

  it('answers unknown routes and methods with 404 problem+json', async () => {
    const app = await start();
    expectProblem(await app.inject({ method: 'GET', url: '/nope' }), 404);
    expectProblem(await app.inject({ method: 'DELETE', url: postPath }), 404);
  });

  it('requires the bearer token on every non-health route when API_TOKEN is set', async () => {
    const token = 'test-token-0123456789abcdef';
    const app = await start({ apiToken: token });
    for (const url of [postPath, '/metrics', '/openapi.json', '/docs/']) {
      const anonymous = await app.inject({ method: 'GET', url });
      expect(expectProblem(anonymous, 401).code).toBe('unauthorized');
      expect(anonymous.headers['www-authenticate']).toBe('Bearer');
      const wrong = await app.inject({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${token}x` },
      });
      expectProblem(wrong, 401);
      const right = await app.inject({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${token}` },
      });
      expect(right.statusCode, url).toBe(200);
    }
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
  });
});

it('asks routes for the API token unless their config says they authenticate callers themselves', async () => {
  const app = await createHttpServer({
    service: 'test',
    title: 'Test',
    description: 'Routes with and without their own authentication',
    version: '0.0.0',
    logger: createLogger({ service: 'test', level: 'silent' }),
    checkReady: async () => {},
    apiToken: 'route-config-token-0123456789',
  });
  try {
    await app.register(async (routes) => {
      routes.post('/signed', { config: { authenticatesItself: true } }, async (_request, reply) =>
        reply.code(204).send(),
      );
      routes.post('/plain', async (_request, reply) => reply.code(204).send());
    });
    expect((await app.inject({ method: 'POST', url: '/signed' })).statusCode).toBe(204);
    const refused = expectProblem(await app.inject({ method: 'POST', url: '/plain' }), 401);
    expect(refused.code).toBe('unauthorized');
  } finally {
    await app.close();
  }
});

describe('shutdown', () => {
  it('closes promptly despite idle keep-alive and never-used connections', async () => {
    t = (await createTestApp(crmService as never)) as TestApp<unknown>;
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.server.address() as import('node:net').AddressInfo;
    const net = await import('node:net');
    const silent = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => silent.once('connect', resolve));
    const keptAlive = await fetch(`http://127.0.0.1:${port}/health`);
    expect(keptAlive.status).toBe(200);
    await keptAlive.text();
    const started = Date.now();
    await t.runtime.stop?.();
    await t.app.close();
    expect(Date.now() - started).toBeLessThan(2_000);
    silent.destroy();
  });
});

describe.each(services)('$definition.title with RATE_LIMIT_MAX', ({ definition, postPath }) => {
  const limited = { RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' };

  it('answers 429 problem+json with Retry-After past the limit, per client address; probes are never limited', async () => {
    t = (await createTestApp(definition as never, { env: limited })) as TestApp<unknown>;
    const app = t.app;
    const remaining: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      const response = await app.inject({ method: 'GET', url: postPath });
      expect(response.statusCode).toBe(200);
      expect(response.headers['x-ratelimit-limit']).toBe('3');
      remaining.push(String(response.headers['x-ratelimit-remaining']));
    }
    expect(remaining).toEqual(['2', '1', '0']);
    const refused = await app.inject({ method: 'GET', url: postPath });
    expect(expectProblem(refused, 429).code).toBe('rate_limited');
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(String(expectProblem(refused, 429).detail)).toContain('Retry-After');
    // Unknown routes count too: scanning is not a way around the limit.
    expectProblem(await app.inject({ method: 'GET', url: '/nope' }), 429);
    // Another client address has its own allowance.
    const other = await app.inject({ method: 'GET', url: postPath, remoteAddress: '10.0.0.7' });
    expect(other.statusCode).toBe(200);
    for (const url of ['/health', '/ready', '/metrics']) {
      expect((await app.inject({ method: 'GET', url })).statusCode, url).toBe(200);
    }
  });

  it('counts refused tokens, so a client cannot guess API_TOKEN at full speed', async () => {
    const token = 'rate-limit-token-0123456789';
    t = (await createTestApp(definition as never, {
      apiToken: token,
      env: limited,
    })) as TestApp<unknown>;
    for (let i = 0; i < 3; i += 1) {
      const guess = await t.app.inject({
        method: 'GET',
        url: postPath,
        headers: { authorization: `Bearer guess-${i}` },
      });
      expectProblem(guess, 401);
    }
    const right = await t.app.inject({
      method: 'GET',
      url: postPath,
      headers: { authorization: `Bearer ${token}` },
    });
    expectProblem(right, 429);
  });

  it('counts every request that carries a token, /metrics and the probes included', async () => {
    const token = 'rate-limit-token-0123456789';
    t = (await createTestApp(definition as never, {
      apiToken: token,
      env: limited,
    })) as TestApp<unknown>;
    const scrape = (authorization: string) =>
      t!.app.inject({ method: 'GET', url: '/metrics', headers: { authorization } });
    for (let i = 0; i < 3; i += 1) expectProblem(await scrape(`Bearer guess-${i}`), 401);
    expectProblem(await scrape('Bearer guess-3'), 429);
    expectProblem(await scrape(`Bearer ${token}`), 429);
    const probe = await t.app.inject({
      method: 'GET',
      url: '/health',
      headers: { authorization: `Bearer ${token}` },
    });
    expectProblem(probe, 429);
    // An orchestrator's probe carries no token and is never limited.
    expect((await t.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
  });
});

it('a rate-limited create stores nothing and succeeds once retried after the window', async () => {
  t = (await createTestApp(crmService as never, {
    env: { RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW_MS: '300' },
  })) as TestApp<unknown>;
  const create = (email: string) =>
    t!.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: { name: 'Ada Lovelace', email },
    });
  expect((await create('first@example.com')).statusCode).toBe(201);
  expectProblem(await create('second@example.com'), 429);
  const stored = () =>
    (t!.database.db as any).selectFrom('customers').select('email').execute() as Promise<
      { email: string }[]
    >;
  expect((await stored()).map((row) => row.email)).toEqual(['first@example.com']);
  await new Promise((resolve) => setTimeout(resolve, 350));
  expect((await create('second@example.com')).statusCode).toBe(201);
  expect(await stored()).toHaveLength(2);
});

it('never limits the signed webhook receiver: the CRM paces its own retries', async () => {
  t = (await createTestApp(integrationService as never, {
    env: { SYNC_MODE: 'hybrid', RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW_MS: '60000' },
  })) as TestApp<unknown>;
  for (let i = 0; i < 3; i += 1) {
    const unsigned = await t.app.inject({
      method: 'POST',
      url: '/webhooks/crm',
      headers: { 'content-type': 'application/json' },
      payload: '{}',
    });
    expect(unsigned.statusCode).toBe(400);
  }
  expect((await t.app.inject({ method: 'GET', url: '/api/status' })).statusCode).toBe(200);
  expectProblem(await t.app.inject({ method: 'GET', url: '/api/status' }), 429);
});

/**
 * Starts the integration service (poll mode) and answers a function that POSTs `payload` as JSON
 * to `url` on it, or nothing at all when `payload` is left out.
 */
async function postingTo(url: string) {
  t = (await createTestApp(integrationService as never, {
    env: { SYNC_MODE: 'poll' },
  })) as TestApp<unknown>;
  const app = t.app;
  return (payload?: unknown) =>
    app.inject({
      method: 'POST',
      url,
      ...(payload === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) }),
    });
}

it('refuses a body on a route that takes none, instead of ignoring its fields', async () => {
  const replayOne = await postingTo(
    '/api/dead-letters/00000000-0000-4000-8000-000000000001/replay',
  );
  const refused = expectProblem(await replayOne({ all: true }), 400);
  expect(refused.code).toBe('unexpected_body');
  expect(refused.detail).toContain('takes no body');
  for (const payload of [[], 'all', 1, null]) expectProblem(await replayOne(payload), 400);
  // Without a body (or an empty one) it is looked up: there is no such dead letter.
  expect((await replayOne()).statusCode).toBe(404);
  expect((await replayOne({})).statusCode).toBe(404);
});

it('takes a bulk replay with no body, an empty one or a filter, and refuses a filter it cannot read', async () => {
  const replayAll = await postingTo('/api/dead-letters/replay');
  const nothing = { matched: 0, replayed: 0, dry_run: false };
  expect((await replayAll()).json()).toEqual(nothing);
  expect((await replayAll({})).json()).toEqual(nothing);
  expect(
    (await replayAll({ since: '2026-12-01T00:00:00Z', status: 503, dry_run: true })).json(),
  ).toEqual({ ...nothing, dry_run: true });
  for (const payload of [
    { since: 'yesterday' },
    { status: 99 },
    { status: '503' },
    { error_contains: '' },
    { customer_id: '00000000-0000-4000-8000-000000000001' },
    [],
    'all',
  ]) {
    expectProblem(await replayAll(payload), 400);
  }
});
