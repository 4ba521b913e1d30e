import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PackageRequest } from '../../src/contracts/package-requests.js';
import type { InventoryTables } from '../../src/inventory/migrations.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';

let t: TestApp<InventoryTables>;
beforeEach(async () => {
  t = await createTestApp(inventoryService);
});
afterEach(async () => {
  await t.close();
});

const get = (url: string) => t.app.inject({ method: 'GET', url });

async function request(customerId: string, kind: string): Promise<string> {
  const response = await t.app.inject({
    method: 'POST',
    url: '/package-requests',
    headers: { 'idempotency-key': `${kind}:${customerId}` },
    payload: { customer_id: customerId, kind, recipient_name: 'Jane Doe' },
  });
  expect(response.statusCode, response.body).toBe(201);
  return (response.json() as { id: string }).id;
}

describe('GET /package-requests/by-customer', () => {
  it('pages through whole customers in byte order of their ids, never splitting one', async () => {
    const customers = Array.from({ length: 5 }, () => randomUUID());
    const created = new Map<string, string[]>();
    for (const customer of customers) {
      created.set(customer, [
        await request(customer, 'welcome_package'),
        await request(customer, 'birthday_card'),
      ]);
    }
    const pages: PackageRequest[][] = [];
    let after = '';
    for (;;) {
      const response = await get(
        `/package-requests/by-customer?limit=2${after && `&after=${after}`}`,
      );
      expect(response.statusCode).toBe(200);
      const page = response.json() as PackageRequest[];
      if (page.length === 0) break;
      expect(new Set(page.map((r) => r.customer_id)).size).toBeLessThanOrEqual(2);
      pages.push(page);
      after = page.at(-1)!.customer_id;
    }
    expect(pages).toHaveLength(3);
    const seen = pages.flat();
    expect(seen.map((r) => r.customer_id)).toEqual(
      [...customers].sort().flatMap((customer) => [customer, customer]),
    );
    // Within a customer, in creation order.
    for (const customer of customers) {
      expect(seen.filter((r) => r.customer_id === customer).map((r) => r.id)).toEqual(
        created.get(customer),
      );
    }
  });

  it('keeps to one kind when asked', async () => {
    const customer = randomUUID();
    const welcome = await request(customer, 'welcome_package');
    await request(customer, 'birthday_card');
    const page = (await get('/package-requests/by-customer?kind=welcome_package')).json();
    expect((page as PackageRequest[]).map((r) => r.id)).toEqual([welcome]);
  });

  it('refuses a malformed cursor, limit or kind with 400', async () => {
    for (const query of ['after=nope', 'limit=0', 'kind=Welcome']) {
      expectProblem(await get(`/package-requests/by-customer?${query}`), 400);
    }
  });
});
