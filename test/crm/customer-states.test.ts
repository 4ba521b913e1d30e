import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CustomerState } from '../../src/contracts/customer-states.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';

let t: TestApp<CrmTables>;
beforeEach(async () => {
  t = await createTestApp(crmService);
});
afterEach(async () => {
  await t.close();
});

const get = async (url: string) => t.app.inject({ method: 'GET', url });

async function create(n: number): Promise<string> {
  const response = await t.app.inject({
    method: 'POST',
    url: '/customers',
    payload: { name: `State ${n}`, email: `state-${n}@example.com` },
  });
  expect(response.statusCode).toBe(201);
  return (response.json() as { id: string }).id;
}

describe('GET /customer-states', () => {
  it('lists live and deleted customers once each, in byte order of their ids, page after page', async () => {
    const ids = [];
    for (let n = 0; n < 7; n += 1) ids.push(await create(n));
    const deleted = ids.slice(0, 3);
    for (const id of deleted) {
      expect((await t.app.inject({ method: 'DELETE', url: `/customers/${id}` })).statusCode).toBe(
        204,
      );
    }
    const seen: CustomerState[] = [];
    let after = '';
    for (;;) {
      const response = await get(`/customer-states?limit=2${after ? `&after=${after}` : ''}`);
      expect(response.statusCode).toBe(200);
      const page = response.json() as CustomerState[];
      if (page.length === 0) break;
      expect(page.length).toBeLessThanOrEqual(2);
      seen.push(...page);
      after = page.at(-1)!.id;
    }
    expect(seen.map((state) => state.id)).toEqual([...ids].sort());
    for (const state of seen) {
      if (deleted.includes(state.id)) {
        expect(state).toMatchObject({ version: 2, name: null, email: null });
        expect(state.deleted_at).toBe(state.changed_at);
      } else {
        expect(state).toMatchObject({ version: 1, deleted_at: null });
        expect(state.name).toMatch(/^State \d$/);
      }
    }
  });

  it('answers one customer live or deleted, and 404 for an id the CRM never had', async () => {
    const live = await create(1);
    const gone = await create(2);
    await t.app.inject({ method: 'DELETE', url: `/customers/${gone}` });
    expect((await get(`/customer-states/${live}`)).json()).toMatchObject({
      id: live,
      email: 'state-1@example.com',
      deleted_at: null,
    });
    expect((await get(`/customer-states/${gone.toUpperCase()}`)).json()).toMatchObject({
      id: gone,
      email: null,
      version: 2,
    });
    const unknown = expectProblem(
      await get('/customer-states/00000000-0000-4000-8000-000000000000'),
      404,
    );
    expect(unknown.detail).toMatch(/never had a customer/);
  });

  it('refuses a malformed cursor or limit with 400', async () => {
    expect(expectProblem(await get('/customer-states?after=nope'), 400).detail).toMatch(/after/);
    expect(expectProblem(await get('/customer-states?limit=1001'), 400).detail).toMatch(/limit/);
  });
});
