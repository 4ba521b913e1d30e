import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { crmService } from '../../../src/crm/service.js';
import { inventoryService } from '../../../src/inventory/service.js';
import { integrationService } from '../../../src/integration/service.js';
import { createTestApp, expectProblem, type TestApp } from '../../support/apps.js';
import { seedDeadLetter } from '../../support/dead-letters.js';

const TOKEN = 'admin-token-0123456789abcdef';

let t: TestApp<any> | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** One write per service, and how to count what it changed in that service's database. */
const writes = [
  {
    definition: crmService,
    method: 'POST',
    url: '/customers',
    body: () => ({ name: 'Ada Lovelace', email: `${randomUUID()}@example.com` }),
    changed: async () =>
      (await t!.database.db.selectFrom('customers').selectAll().execute()).length,
  },
  {
    definition: inventoryService,
    method: 'POST',
    url: '/package-requests',
    body: () => ({ customer_id: randomUUID() }),
    changed: async () =>
      (await t!.database.db.selectFrom('package_requests').selectAll().execute()).length,
  },
  {
    definition: integrationService,
    method: 'POST',
    url: '/api/dead-letters/replay',
    body: () => undefined,
    changed: async () =>
      (
        await t!.database.db
          .selectFrom('deliveries')
          .where('state', '!=', 'dead')
          .selectAll()
          .execute()
      ).length,
  },
] as const;

const CROSS_SITE: Record<string, string>[] = [
  { 'sec-fetch-site': 'cross-site' },
  // Another port of the same name is another origin, though the same site.
  { 'sec-fetch-site': 'same-site' },
  { origin: 'http://attacker.test' },
  { origin: 'http://localhost:5173' },
  { origin: 'null' },
  // Sec-Fetch-Site decides when a browser sends it, whatever Origin says.
  { 'sec-fetch-site': 'cross-site', origin: 'http://localhost' },
];
const SAME_ORIGIN: Record<string, string>[] = [
  {},
  { 'sec-fetch-site': 'same-origin' },
  { 'sec-fetch-site': 'none' },
  { origin: 'http://localhost' },
  { origin: 'HTTP://LOCALHOST' },
];

describe.each(writes)('$definition.title $method $url', (write) => {
  const start = async (apiToken?: string) => {
    t = (await createTestApp(write.definition as never, {
      ...(apiToken ? { apiToken } : {}),
      env: { SYNC_MODE: 'poll' },
    })) as TestApp<any>;
    if (write.definition === integrationService) await seedDeadLetter(t.database, 'Jane Doe');
  };
  const send = (headers: Record<string, string>, apiToken?: string) => {
    const body = write.body();
    return t!.app.inject({
      method: write.method,
      url: write.url,
      headers: {
        host: 'localhost',
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...(apiToken ? { authorization: `Bearer ${apiToken}` } : {}),
        ...headers,
      },
      ...(body ? { payload: body } : {}),
    });
  };

  it('refuses it with 403 when a browser marks it as sent from another site, and changes nothing', async () => {
    await start();
    for (const headers of CROSS_SITE) {
      const refused = expectProblem(await send(headers), 403);
      expect(refused.code, JSON.stringify(headers)).toBe('cross_site_request');
      expect(String(refused.detail)).toMatch(/another site \((Sec-Fetch-Site|Origin): /);
    }
    expect(await write.changed()).toBe(0);
  });

  it('refuses it whatever the credentials: the admin token does not make a cross-site write safe', async () => {
    await start(TOKEN);
    expectProblem(await send({ 'sec-fetch-site': 'cross-site' }, TOKEN), 403);
    expect(await write.changed()).toBe(0);
  });

  it("takes it from the service's own pages and from clients that are not browsers", async () => {
    await start();
    for (const headers of SAME_ORIGIN) {
      const answer = await send(headers);
      expect(answer.statusCode, JSON.stringify(headers)).toBeLessThan(300);
    }
    expect(await write.changed()).toBeGreaterThan(0);
  });
});

it('lets another site send GETs, which change nothing, and read none of the answers', async () => {
  t = (await createTestApp(crmService as never)) as TestApp<any>;
  const answer = await t.app.inject({
    method: 'GET',
    url: '/customers',
    headers: { 'sec-fetch-site': 'cross-site', origin: 'http://attacker.test' },
  });
  expect(answer.statusCode).toBe(200);
  // The browser does not let the other site read it: no CORS header, and CORP same-origin.
  expect(answer.headers['access-control-allow-origin']).toBeUndefined();
  expect(answer.headers['cross-origin-resource-policy']).toBe('same-origin');
});

it('keeps the signed webhook receiver to its own checks: a cross-site call is refused before them', async () => {
  t = (await createTestApp(integrationService as never, {
    env: { SYNC_MODE: 'hybrid' },
  })) as TestApp<any>;
  const call = (headers: Record<string, string>) =>
    t!.app.inject({
      method: 'POST',
      url: '/webhooks/crm',
      headers: { 'content-type': 'application/json', ...headers },
      payload: '{}',
    });
  expectProblem(await call({ 'sec-fetch-site': 'cross-site' }), 403);
  // The CRM sends neither header: its calls meet the signature check.
  expect((await call({})).statusCode).toBe(400);
});
