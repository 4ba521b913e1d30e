import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { crmService } from '../../src/crm/service.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';

let t: TestApp<CrmTables>;
beforeEach(async () => {
  t = await createTestApp(crmService);
});
afterEach(async () => {
  await t.close();
});

interface Customer {
  id: string;
  name: string;
  email: string;
  version: number;
  created_at: string;
  updated_at: string;
}

const json = { 'content-type': 'application/json' };

async function create(name: string, email: string): Promise<Customer> {
  const response = await t.app.inject({
    method: 'POST',
    url: '/customers',
    headers: json,
    payload: { name, email },
  });
  expect(response.statusCode).toBe(201);
  return response.json();
}

const patch = (id: string, payload: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: 'PATCH',
    url: `/customers/${id}`,
    headers: { ...json, ...headers },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });

const get = async (id: string) =>
  (await t.app.inject({ method: 'GET', url: `/customers/${id}` })).json();

/** The feed's events, in feed order. */
const feed = async () =>
  (await t.app.inject({ method: 'GET', url: '/events?limit=1000' })).json() as {
    type: string;
    position: number;
    data: Customer;
    changed_fields?: string[];
  }[];

describe('PATCH /customers/{id}', () => {
  it('changes the name and email, moves the version and update time, and records customer.updated with the new state', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    const response = await patch(jane.id, { name: 'Jane Roe', email: 'jane.roe@example.com' });
    expect(response.statusCode).toBe(200);
    const changed = response.json() as Customer;
    expect(changed).toMatchObject({
      id: jane.id,
      name: 'Jane Roe',
      email: 'jane.roe@example.com',
      version: 2,
      created_at: jane.created_at,
    });
    expect(Date.parse(changed.updated_at)).toBeGreaterThanOrEqual(Date.parse(jane.updated_at));
    expect(response.headers.etag).toBe('"2"');
    expect(await get(jane.id)).toEqual(changed);

    const events = await feed();
    expect(events.map((e) => [e.type, e.data.version])).toEqual([
      ['customer.created', 1],
      ['customer.updated', 2],
    ]);
    expect(events[1]).toMatchObject({ data: changed, changed_fields: ['name', 'email'] });
    // Only the fields given change; the event names just those.
    const renamed = (await patch(jane.id, { name: 'J. Roe' })).json() as Customer;
    expect(renamed).toMatchObject({ name: 'J. Roe', email: 'jane.roe@example.com', version: 3 });
    expect((await feed())[2]).toMatchObject({ data: renamed, changed_fields: ['name'] });
  });

  it('answers a change that gives no field a new value with the customer as it is, recording nothing', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    const response = await patch(jane.id, { name: 'Jane Doe', email: 'jane@example.com' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual(jane);
    expect(await feed()).toHaveLength(1);
  });

  it('applies a change under a matching If-Match, and refuses a stale one with 412 naming the current version, changing nothing', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    expect((await patch(jane.id, { name: 'Jane A' }, { 'if-match': '"1"' })).statusCode).toBe(200);
    const stale = await patch(jane.id, { name: 'Jane B' }, { 'if-match': '"1"' });
    expect(expectProblem(stale, 412)).toMatchObject({
      code: 'version_mismatch',
      current_version: 2,
    });
    expect(stale.headers.etag).toBe('"2"');
    // A weak tag never matches (strong comparison); `*` matches any current version.
    expect((await patch(jane.id, { name: 'Jane B' }, { 'if-match': 'W/"2"' })).statusCode).toBe(
      412,
    );
    expect((await patch(jane.id, { name: 'Jane C' }, { 'if-match': '"7", "2"' })).statusCode).toBe(
      200,
    );
    expect((await patch(jane.id, { name: 'Jane D' }, { 'if-match': '*' })).statusCode).toBe(200);
    expect(await get(jane.id)).toMatchObject({ name: 'Jane D', version: 4 });
    expect(await feed()).toHaveLength(4);
  });

  it('refuses a malformed If-Match with 400, changing nothing', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    for (const ifMatch of ['1', '"1', 'W/1', '"1",,', 'version 1']) {
      const response = await patch(jane.id, { name: 'Jane X' }, { 'if-match': ifMatch });
      expect(expectProblem(response, 400).code, ifMatch).toBe('invalid_if_match');
    }
    expect(await get(jane.id)).toEqual(jane);
    expect(await feed()).toHaveLength(1);
  });

  it('refuses an email another customer has, in any letter case, with 409 naming them; the own email in another case is a change', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    const john = await create('John Roe', 'john@example.com');
    const taken = await patch(john.id, { email: 'JANE@Example.com' });
    expect(expectProblem(taken, 409)).toMatchObject({
      code: 'email_taken',
      existing_customer_id: jane.id,
    });
    expect(await get(john.id)).toEqual(john);
    expect(await feed()).toHaveLength(2);
    const recased = await patch(john.id, { email: 'John@Example.com' });
    expect(recased.json()).toMatchObject({ email: 'John@Example.com', version: 2 });
  });

  it('refuses bodies that change nothing it may change with 400, naming the field, changing nothing', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    const cases: [unknown, string][] = [
      [{}, '(root)'],
      [{ id: jane.id }, 'id'],
      [{ version: 5 }, 'version'],
      [{ created_at: jane.created_at, name: 'X' }, 'created_at'],
      [{ updated_at: jane.updated_at }, 'updated_at'],
      [{ name: 'Jane', phone: '555' }, 'phone'],
      [{ email: 'not-an-email' }, 'email'],
      [{ name: '   ' }, 'name'],
      [{ name: null }, 'name'],
    ];
    for (const [body, field] of cases) {
      const problem = expectProblem(await patch(jane.id, body), 400);
      expect(
        (problem.errors as { field: string }[]).map((error) => error.field),
        JSON.stringify(body),
      ).toContain(field);
    }
    expect(expectProblem(await patch(jane.id, '{"name":'), 400)).toBeDefined();
    expect(await get(jane.id)).toEqual(jane);
    expect(await feed()).toHaveLength(1);
  });

  it('answers 404 for a customer that does not exist', async () => {
    const response = await patch('00000000-0000-4000-8000-000000000000', { name: 'Nobody' });
    expect(expectProblem(response, 404).detail).toMatch(/No customer has id/);
  });

  it('gives concurrent changes of one customer one version each, in feed order; under one If-Match only one wins', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => patch(jane.id, { name: `Jane ${i}` })),
    );
    expect(answers.map((a) => a.statusCode)).toEqual(Array(6).fill(200));
    const versions = answers.map((a) => (a.json() as Customer).version).sort((a, b) => a - b);
    expect(versions).toEqual([2, 3, 4, 5, 6, 7]);
    const updates = (await feed()).filter((e) => e.type === 'customer.updated');
    expect(updates.map((e) => e.data.version)).toEqual([2, 3, 4, 5, 6, 7]);
    expect((await get(jane.id)).name).toBe(updates.at(-1)!.data.name);

    const guarded = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        patch(jane.id, { name: `Guarded ${i}` }, { 'if-match': '"7"' }),
      ),
    );
    expect(guarded.map((a) => a.statusCode).sort()).toEqual([200, 412, 412, 412]);
    expect((await get(jane.id)).version).toBe(8);
  });
});
