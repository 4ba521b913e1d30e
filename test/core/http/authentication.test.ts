import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, readCommonConfig } from '../../../src/core/config.js';
import { crmService } from '../../../src/crm/service.js';
import { inventoryService } from '../../../src/inventory/service.js';
import { integrationService } from '../../../src/integration/service.js';
import { createTestApp, expectProblem, type TestApp } from '../../support/apps.js';
import { deliveryStateOf, seedDeadLetter } from '../../support/dead-letters.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READER = 'read-token-0123456789abcdef';
const as = (token: string) => ({ authorization: `Bearer ${token}` });

let t: TestApp<any> | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const start = async (definition: unknown, tokens = { apiToken: ADMIN, apiReadToken: READER }) => {
  t = (await createTestApp(definition as never, {
    ...tokens,
    env: { SYNC_MODE: 'poll' },
  })) as TestApp<any>;
  return t.app;
};

describe('API_READ_TOKEN on the integration service', () => {
  it('reads the status, lists, dashboard, metrics and docs, as HTTP Basic in a browser too', async () => {
    const app = await start(integrationService);
    const basic = `Basic ${Buffer.from(`anyone:${READER}`).toString('base64')}`;
    for (const url of [
      '/api/status',
      '/api/dashboard',
      '/api/deliveries',
      '/api/dead-letters',
      '/metrics',
      '/openapi.json',
      '/docs/',
      '/',
      '/dashboard.js',
    ]) {
      expect((await app.inject({ method: 'GET', url, headers: as(READER) })).statusCode, url).toBe(
        200,
      );
      expect(
        (await app.inject({ method: 'HEAD', url, headers: { authorization: basic } })).statusCode,
        url,
      ).toBe(200);
    }
  });

  it('cannot replay, pause or resume: 403 naming the scope and the admin token, and nothing changes', async () => {
    const app = await start(integrationService);
    const customerId = await seedDeadLetter(t!.database, 'Jane Doe');
    for (const url of [
      '/api/dead-letters/replay',
      `/api/dead-letters/${customerId}/replay`,
      '/api/delivery/pause',
      '/api/delivery/resume',
    ]) {
      const refused = await app.inject({ method: 'POST', url, headers: as(READER) });
      const problem = expectProblem(refused, 403);
      expect(problem).toMatchObject({ code: 'insufficient_scope', required_scope: 'admin' });
      expect(String(problem.detail)).toContain('API_TOKEN');
      expect(refused.headers['www-authenticate']).toContain('insufficient_scope');
    }
    expect(await deliveryStateOf(t!.database, customerId)).toBe('dead');
    expect(
      (await app.inject({ method: 'GET', url: '/api/status', headers: as(READER) })).json(),
    ).toMatchObject({ paused: null });
    const replayed = await app.inject({
      method: 'POST',
      url: '/api/dead-letters/replay',
      headers: as(ADMIN),
    });
    expect(replayed.json()).toEqual({ matched: 1, replayed: 1, dry_run: false });
    expect(await deliveryStateOf(t!.database, customerId)).toBe('pending');
  });

  it('tells the dashboard what the caller may do, so it hides what a read token cannot take', async () => {
    const app = await start(integrationService);
    const access = async (headers: Record<string, string>) =>
      (await app.inject({ method: 'GET', url: '/api/dashboard', headers })).json().access;
    expect(await access(as(READER))).toBe('read');
    expect(await access(as(ADMIN))).toBe('admin');
    await t!.close();
    const open = await start(integrationService, {} as never);
    expect((await open.inject({ method: 'GET', url: '/api/dashboard' })).json().access).toBe(
      'admin',
    );
  });
});

it('the read token cannot change the CRM, nor read a webhook signing secret', async () => {
  const app = await start(crmService);
  const create = await app.inject({
    method: 'POST',
    url: '/customers',
    headers: { ...as(READER), 'content-type': 'application/json' },
    payload: { name: 'Ada Lovelace', email: 'ada@example.com' },
  });
  expect(expectProblem(create, 403).code).toBe('insufficient_scope');
  expect(await t!.database.db.selectFrom('customers').selectAll().execute()).toEqual([]);
  expect(
    (await app.inject({ method: 'GET', url: '/customers', headers: as(READER) })).statusCode,
  ).toBe(200);

  const endpoint = await app.inject({
    method: 'POST',
    url: '/webhook-endpoints',
    headers: { ...as(ADMIN), 'content-type': 'application/json' },
    payload: { url: 'http://127.0.0.1:9/hook' },
  });
  expect(endpoint.statusCode).toBe(201);
  const { id } = endpoint.json();
  const secret = `/webhook-endpoints/${id}/secret`;
  const refused = expectProblem(
    await app.inject({ method: 'GET', url: secret, headers: as(READER) }),
    403,
  );
  expect(String(refused.detail)).toContain('reveals secrets');
  expect((await app.inject({ method: 'GET', url: secret, headers: as(ADMIN) })).statusCode).toBe(
    200,
  );
  expect(
    (await app.inject({ method: 'GET', url: `/webhook-endpoints/${id}`, headers: as(READER) }))
      .statusCode,
  ).toBe(200);
  for (const [method, url] of [
    ['DELETE', `/webhook-endpoints/${id}`],
    ['POST', `/webhook-endpoints/${id}/rotate-secret`],
  ] as const) {
    expectProblem(await app.inject({ method, url, headers: as(READER) }), 403);
  }
});

it('the read token cannot create package requests in Inventory', async () => {
  const app = await start(inventoryService);
  const refused = await app.inject({
    method: 'POST',
    url: '/package-requests',
    headers: { ...as(READER), 'content-type': 'application/json' },
    payload: { customer_id: randomUUID() },
  });
  expectProblem(refused, 403);
  expect(await t!.database.db.selectFrom('package_requests').selectAll().execute()).toEqual([]);
});

it('a wrong token is 401 for readers and writers alike', async () => {
  const app = await start(inventoryService);
  for (const method of ['GET', 'POST'] as const) {
    const refused = await app.inject({ method, url: '/package-requests', headers: as('guess') });
    expect(expectProblem(refused, 401).code).toBe('unauthorized');
  }
});

it('takes API_READ_TOKEN only beside API_TOKEN, 16 characters or more and different from it', () => {
  const env = { API_TOKEN: ADMIN };
  expect(readCommonConfig({ ...env, API_READ_TOKEN: READER }).apiReadToken).toBe(READER);
  expect(readCommonConfig(env).apiReadToken).toBeUndefined();
  for (const wrong of [
    { API_READ_TOKEN: READER },
    { ...env, API_READ_TOKEN: 'short' },
    { ...env, API_READ_TOKEN: ADMIN },
  ]) {
    expect(() => readCommonConfig(wrong), JSON.stringify(wrong)).toThrow(ConfigError);
  }
  expect(() => readCommonConfig({ API_READ_TOKEN: READER })).toThrow(/set API_TOKEN/);
});
