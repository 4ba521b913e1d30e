import { afterEach, expect, it } from 'vitest';
import type { IntegrationTables } from '../../../src/integration/migrations.js';
import { openIncident } from '../../../src/integration/alerts/incidents.js';
import { integrationService } from '../../../src/integration/service.js';
import { createTestApp, expectProblem, type TestApp } from '../../support/apps.js';

// The admin API that registers where alerts go, and the same target guard (SSRF) as the CRM's.

const NOWHERE = { CRM_URL: 'http://127.0.0.1:9', INVENTORY_URL: 'http://127.0.0.1:9' };
let t: TestApp<IntegrationTables> | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const register = (url: unknown) =>
  t!.app.inject({ method: 'POST', url: '/api/alert-endpoints', payload: { url } });

it('registers an endpoint with a whsec_ secret shown once, lists it without the secret, deletes it', async () => {
  t = await createTestApp(integrationService, { env: { SYNC_MODE: 'poll', ...NOWHERE } });
  const created = await register('http://127.0.0.1:4000/alerts');
  expect(created.statusCode).toBe(201);
  const endpoint = created.json() as { id: string; secret: string };
  expect(endpoint).toMatchObject({ url: 'http://127.0.0.1:4000/alerts', origin: 'api' });
  expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
  expect(created.headers.location).toBe(`/api/alert-endpoints/${endpoint.id}`);

  const listed = await t.app.inject({ method: 'GET', url: '/api/alert-endpoints' });
  expect(listed.json()).toEqual([
    {
      id: endpoint.id,
      url: 'http://127.0.0.1:4000/alerts',
      origin: 'api',
      created_at: expect.any(String),
    },
  ]);
  expect(listed.body).not.toContain(endpoint.secret);

  const again = expectProblem(await register('http://127.0.0.1:4000/alerts'), 409);
  expect(again.detail).toContain(endpoint.id);

  // An alert raised for it and not yet sent is cancelled with it.
  await openIncident(t.database.db, { type: 'backlog.high', key: 'inventory', summary: 'big' });
  const url = `/api/alert-endpoints/${endpoint.id}`;
  expect((await t.app.inject({ method: 'DELETE', url })).statusCode).toBe(204);
  const outbox = await t.database.db.selectFrom('alert_outbox').select('state').execute();
  expect(outbox).toEqual([{ state: 'cancelled' }]);
  expect(expectProblem(await t.app.inject({ method: 'DELETE', url }), 404).detail).toContain(
    'GET /api/alert-endpoints',
  );
  expect((await t.app.inject({ method: 'GET', url: '/api/alert-endpoints' })).json()).toEqual([]);
});

it('refuses a private URL unless WEBHOOK_ALLOW_PRIVATE_TARGETS or the allow-list admits it, saying how', async () => {
  t = await createTestApp(integrationService, {
    env: {
      SYNC_MODE: 'poll',
      ...NOWHERE,
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false',
      WEBHOOK_ALLOWED_PRIVATE_TARGETS: '10.1.2.3:8080',
    },
  });
  const refused = expectProblem(await register('http://127.0.0.1:4000/alerts'), 422);
  expect(refused.code).toBe('alert_target_refused');
  expect(refused.detail).toContain('WEBHOOK_ALLOWED_PRIVATE_TARGETS');
  expect(expectProblem(await register('http://10.1.2.3:9090/'), 422).code).toBe(
    'alert_target_refused',
  );
  expect((await register('http://10.1.2.3:8080/alerts')).statusCode).toBe(201);
  // Cloud metadata is never a target, whatever is allowed.
  expect(expectProblem(await register('http://169.254.169.254/latest'), 422).detail).toContain(
    'never allowed',
  );
});

it('answers bad input with a 4xx problem a person can act on, never a 5xx', async () => {
  t = await createTestApp(integrationService, { env: { SYNC_MODE: 'poll', ...NOWHERE } });
  expect(expectProblem(await register('not a url'), 422).detail).toContain('http:// or https://');
  expect(expectProblem(await register('ftp://example.com/'), 422).detail).toContain(
    'http or https',
  );
  expect(expectProblem(await register('http://user:pw@127.0.0.1/'), 422).detail).toContain(
    'credentials',
  );
  expectProblem(await register(42), 400);
  expectProblem(
    await t.app.inject({ method: 'POST', url: '/api/alert-endpoints', payload: {} }),
    400,
  );
  expectProblem(
    await t.app.inject({ method: 'DELETE', url: '/api/alert-endpoints/not-a-uuid' }),
    400,
  );
});

it('registers the endpoints of ALERT_WEBHOOK_URLS at start-up, and forgets those no longer listed', async () => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  t = await createTestApp(integrationService, {
    env: {
      SYNC_MODE: 'poll',
      ...NOWHERE,
      ALERT_WEBHOOK_URLS: 'http://127.0.0.1:4001/a, http://127.0.0.1:4002/b',
      ALERT_WEBHOOK_SECRET: secret,
    },
  });
  await t.runtime.start?.({ url: 'http://127.0.0.1:9' });
  const listed = await t.app.inject({ method: 'GET', url: '/api/alert-endpoints' });
  expect(
    (listed.json() as { url: string; origin: string }[]).map((e) => [e.url, e.origin]),
  ).toEqual([
    ['http://127.0.0.1:4001/a', 'config'],
    ['http://127.0.0.1:4002/b', 'config'],
  ]);
  const rows = await t.database.db.selectFrom('alert_endpoints').select('secret').execute();
  expect(rows.map((row) => row.secret)).toEqual([secret, secret]);
  await t.runtime.stop?.();
  await t.app.close();

  const { database } = t;
  t = await createTestApp(integrationService, {
    database,
    env: {
      SYNC_MODE: 'poll',
      ...NOWHERE,
      ALERT_WEBHOOK_URLS: 'http://127.0.0.1:4002/b',
      ALERT_WEBHOOK_SECRET: secret,
    },
  });
  await t.runtime.start?.({ url: 'http://127.0.0.1:9' });
  const after = await t.app.inject({ method: 'GET', url: '/api/alert-endpoints' });
  expect((after.json() as { url: string }[]).map((e) => e.url)).toEqual([
    'http://127.0.0.1:4002/b',
  ]);
  await t.close();
  t = undefined;
  await database.drop();
});

it('takes the admin token and refuses cross-site writes, as every admin action does', async () => {
  const token = 'admin-token-0123456789abcdef';
  t = await createTestApp(integrationService, {
    apiToken: token,
    apiReadToken: 'read-token-0123456789abcdef',
    env: { SYNC_MODE: 'poll', ...NOWHERE },
  });
  const post = (headers: Record<string, string>) =>
    t!.app.inject({
      method: 'POST',
      url: '/api/alert-endpoints',
      headers,
      payload: { url: 'http://127.0.0.1:4000/alerts' },
    });
  expectProblem(await post({}), 401);
  expectProblem(await post({ authorization: 'Bearer read-token-0123456789abcdef' }), 403);
  const admin = { authorization: `Bearer ${token}` };
  expectProblem(await post({ ...admin, 'sec-fetch-site': 'cross-site' }), 403);
  expect(await t.database.db.selectFrom('alert_endpoints').selectAll().execute()).toEqual([]);
  const created = await post(admin);
  expect(created.statusCode).toBe(201);
  const url = `/api/alert-endpoints/${(created.json() as { id: string }).id}`;
  expectProblem(await t.app.inject({ method: 'DELETE', url }), 401);
  expectProblem(
    await t.app.inject({
      method: 'DELETE',
      url,
      headers: { ...admin, origin: 'http://attacker.test' },
    }),
    403,
  );
  expect((await t.app.inject({ method: 'DELETE', url, headers: admin })).statusCode).toBe(204);
});

it('refuses to start with an ALERT_WEBHOOK_URLS entry the target guard refuses, naming the setting that admits it', async () => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const startWith = async (env: Record<string, string>) => {
    t = await createTestApp(integrationService, {
      env: { SYNC_MODE: 'poll', ...NOWHERE, ALERT_WEBHOOK_SECRET: secret, ...env },
    });
    try {
      await t.runtime.start?.({ url: 'http://127.0.0.1:9' });
      return undefined;
    } catch (error) {
      return error as Error;
    }
  };
  const privateTarget = await startWith({
    ALERT_WEBHOOK_URLS: 'http://10.1.2.3:8080/alerts',
    WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false',
  });
  expect(privateTarget?.name).toBe('ConfigError');
  expect(privateTarget?.message).toContain('ALERT_WEBHOOK_URLS="http://10.1.2.3:8080/alerts"');
  expect(privateTarget?.message).toContain('WEBHOOK_ALLOWED_PRIVATE_TARGETS');
  expect(await t!.database.db.selectFrom('alert_endpoints').selectAll().execute()).toEqual([]);
  await t!.close();

  const metadata = await startWith({ ALERT_WEBHOOK_URLS: 'http://169.254.169.254/latest' });
  expect(metadata?.message).toContain('never allowed');
  await t!.close();

  const admitted = await startWith({
    ALERT_WEBHOOK_URLS: 'http://10.1.2.3:8080/alerts',
    WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false',
    WEBHOOK_ALLOWED_PRIVATE_TARGETS: '10.1.2.3:8080',
  });
  expect(admitted).toBeUndefined();
});
