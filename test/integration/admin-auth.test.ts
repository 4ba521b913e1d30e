import { afterEach, expect, it } from 'vitest';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import { integrationService } from '../../src/integration/service.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';

const token = 'admin-token-0123456789abcdef';
let t: TestApp<IntegrationTables> | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

it('with API_TOKEN, the dashboard and admin API need it; browsers get a Basic prompt', async () => {
  t = await createTestApp(integrationService, { apiToken: token, env: { SYNC_MODE: 'hybrid' } });
  const page = await t.app.inject({ method: 'GET', url: '/', headers: { accept: 'text/html' } });
  expectProblem(page, 401);
  expect(page.headers['www-authenticate']).toMatch(/^Basic realm=/);
  const basic = `Basic ${Buffer.from(`anyone:${token}`).toString('base64')}`;
  const withBasic = await t.app.inject({
    method: 'GET',
    url: '/',
    headers: { authorization: basic },
  });
  expect(withBasic.statusCode).toBe(200);
  expect(withBasic.body).toContain('Mini Integration Platform');
  const wrongBasic = `Basic ${Buffer.from('anyone:guess').toString('base64')}`;
  expectProblem(
    await t.app.inject({ method: 'GET', url: '/', headers: { authorization: wrongBasic } }),
    401,
  );

  for (const [method, url] of [
    ['GET', '/api/status'],
    ['GET', '/api/dashboard'],
    ['GET', '/api/dead-letters'],
    ['POST', '/api/dead-letters/replay'],
    ['POST', '/api/delivery/pause'],
    ['POST', '/api/delivery/resume'],
    ['GET', '/api/alert-endpoints'],
    ['GET', '/api/customers/00000000-0000-4000-8000-000000000001/timeline?after=1'],
    ['GET', '/dashboard.js'],
  ] as const) {
    const anonymous = await t.app.inject({ method, url });
    expect(expectProblem(anonymous, 401).code, url).toBe('unauthorized');
    expect(anonymous.headers['www-authenticate']).toBe('Bearer');
    const allowed = await t.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(allowed.statusCode, url).toBe(200);
  }
  // The webhook receiver authenticates calls by their signature, not by the token.
  const webhook = await t.app.inject({
    method: 'POST',
    url: '/webhooks/crm',
    headers: { 'content-type': 'application/json' },
    payload: '{}',
  });
  expect(webhook.statusCode).toBe(400);
});

it('serves only the dashboard files: no path tricks reach the rest of the disk', async () => {
  t = await createTestApp(integrationService, { env: { SYNC_MODE: 'poll' } });
  for (const url of [
    '/../package.json',
    '/..%2fpackage.json',
    '/%2e%2e/%2e%2e/etc/passwd',
    '/index.html%00.js',
  ]) {
    const response = await t.app.inject({ method: 'GET', url });
    expect(response.statusCode, url).toBeGreaterThanOrEqual(400);
    expect(response.statusCode, url).toBeLessThan(500);
    expect(response.body).not.toContain('"dependencies"');
  }
  expect((await t.app.inject({ method: 'GET', url: '/dashboard.css' })).statusCode).toBe(200);
});
