import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { crmService } from '../../src/crm/service.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { countRows } from '../support/databases.js';

let t: TestApp<CrmTables>;
beforeEach(async () => {
  t = await createTestApp(crmService);
});
afterEach(async () => {
  await t.close();
});

const create = (payload: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: 'POST',
    url: '/customers',
    headers: { 'content-type': 'application/json', ...headers },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });

const countCustomers = () => countRows(t.database.db, 'customers');

describe('POST /customers', () => {
  it("creates the seed's Jane Doe with 201, a Location header and the stored fields", async () => {
    const response = await create({ name: 'Jane Doe', email: 'jane.doe@example.com' });
    expect(response.statusCode).toBe(201);
    const body = response.json();
    expect(body).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      name: 'Jane Doe',
      email: 'jane.doe@example.com',
      version: 1,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      updated_at: body.created_at,
    });
    expect(response.headers.location).toBe(`/customers/${body.id}`);
    expect(response.headers.etag).toBe('"1"');
    const fetched = await t.app.inject({ method: 'GET', url: response.headers.location as string });
    expect(fetched.statusCode).toBe(200);
    expect(fetched.json()).toEqual(body);
  });

  it('refuses a second customer whose email differs only in case with 409 naming the first', async () => {
    const first = (await create({ name: 'Jane Doe', email: 'jane.doe@example.com' })).json();
    const second = await create({ name: 'Jane D.', email: 'JANE.Doe@Example.com' });
    const problem = expectProblem(second, 409);
    expect(problem.code).toBe('email_taken');
    expect(problem.existing_customer_id).toBe(first.id);
    expect(await countCustomers()).toBe(1);
  });

  it('lets exactly one of many concurrent creates with one email win', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        create({ name: `Twin ${i}`, email: `twin@example.com` }),
      ),
    );
    expect(responses.filter((r) => r.statusCode === 201)).toHaveLength(1);
    expect(responses.filter((r) => r.statusCode === 409)).toHaveLength(19);
    expect(await countCustomers()).toBe(1);
  });

  const badBodies: [string, unknown][] = [
    ['missing name', { email: 'a@example.com' }],
    ['missing email', { name: 'A' }],
    ['empty object', {}],
    ['an array', [{ name: 'A', email: 'a@example.com' }]],
    ['a string', '"hello"'],
    ['null', 'null'],
    ['a number as name', { name: 42, email: 'a@example.com' }],
    ['a number as email', { name: 'A', email: 42 }],
    ['an object as name', { name: { first: 'A' }, email: 'a@example.com' }],
    ['a blank name', { name: '   ', email: 'a@example.com' }],
    ['a name of invisible characters', { name: '\u200b\u200d\u2060', email: 'a@example.com' }],
    ['an empty name', { name: '', email: 'a@example.com' }],
    ['a NUL byte in the name', { name: 'A\u0000B', email: 'a@example.com' }],
    ['a newline in the name', { name: 'A\nB', email: 'a@example.com' }],
    ['a lone surrogate in the name', '{"name":"A\\ud800B","email":"a@example.com"}'],
    ['a 201-character name', { name: 'x'.repeat(201), email: 'a@example.com' }],
    ['an invalid email', { name: 'A', email: 'not-an-email' }],
    ['an email with spaces', { name: 'A', email: 'a b@example.com' }],
    ['an over-long email', { name: 'A', email: `${'a'.repeat(250)}@example.com` }],
    ['an unknown field', { name: 'A', email: 'a@example.com', vip: true }],
    [
      'a client-chosen id',
      { id: '00000000-0000-4000-8000-000000000000', name: 'A', email: 'a@example.com' },
    ],
    [
      'a client-chosen created_at',
      { name: 'A', email: 'a@example.com', created_at: '2020-01-01T00:00:00Z' },
    ],
    ['malformed JSON', '{"name": "A", '],
    [
      'an SQL injection attempt as a field',
      { name: "A'); drop table customers;--", email: "x'@example.com; drop" },
    ],
  ];
  it.each(badBodies)('rejects %s with 400 problem+json and stores nothing', async (_, payload) => {
    const problem = expectProblem(await create(payload), 400);
    expect(problem.detail).toMatch(/\w/);
    expect(await countCustomers()).toBe(0);
  });

  it('names each field at fault', async () => {
    const problem = expectProblem(await create({ name: '', email: 'nope', extra: 1 }), 400);
    const fields = (problem.errors as { field: string }[]).map((e) => e.field).sort();
    expect(fields).toEqual(expect.arrayContaining(['email', 'extra', 'name']));
  });

  it('accepts unicode names as people write them', async () => {
    const response = await create({ name: 'Zoë Ångström-李 🙂', email: 'zoe@example.com' });
    expect(response.statusCode).toBe(201);
    expect(response.json().name).toBe('Zoë Ångström-李 🙂');
  });

  it('answers 415 for a body that is not JSON, 413 for one over 64 KiB', async () => {
    const text = await t.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'text/plain' },
      payload: 'name=Jane',
    });
    expectProblem(text, 415);
    const form = await t.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'name=Jane',
    });
    expectProblem(form, 415);
    const huge = await create({ name: 'A', email: 'a@example.com', padding: 'x'.repeat(70_000) });
    expectProblem(huge, 413);
    expect(await countCustomers()).toBe(0);
  });
});

describe('GET /customers', () => {
  it('pages through every customer in creation order with no gaps or repeats', async () => {
    const created: string[] = [];
    for (let i = 0; i < 23; i += 1) {
      created.push((await create({ name: `Customer ${i}`, email: `c${i}@example.com` })).json().id);
    }
    const seen: string[] = [];
    let url: string | undefined = '/customers?limit=5';
    let pages = 0;
    while (url) {
      const response = await t.app.inject({ method: 'GET', url });
      expect(response.statusCode).toBe(200);
      const items = response.json() as { id: string }[];
      expect(items.length).toBeLessThanOrEqual(5);
      seen.push(...items.map((c) => c.id));
      const link = response.headers.link as string | undefined;
      url = link ? /^<([^>]+)>; rel="next"$/.exec(link)?.[1] : undefined;
      pages += 1;
    }
    expect(seen).toEqual(created);
    expect(pages).toBe(5);
  });

  it('misses no customer for a client paging while many are created concurrently', async () => {
    const total = 200;
    const seen: string[] = [];
    let after: string | undefined;
    let creating = true;
    const readPage = async (query: string) => {
      const response = await t.app.inject({ method: 'GET', url: `/customers?${query}` });
      expect(response.statusCode).toBe(200);
      return (response.json() as { id: string }[]).map((c) => c.id);
    };
    const reader = (async () => {
      for (;;) {
        // An empty page ends the loop only if it began after the last create had answered.
        const createsDone = !creating;
        const page = await readPage(`limit=20${after ? `&after=${after}` : ''}`);
        seen.push(...page);
        after = page.at(-1) ?? after;
        if (createsDone && page.length === 0) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const creates = Array.from({ length: total }, (_, i) =>
      create({ name: `Customer ${i}`, email: `c${i}@example.com` }),
    );
    const created = await Promise.all(creates);
    creating = false;
    await reader;
    expect(created.every((r) => r.statusCode === 201)).toBe(true);
    // Every customer exactly once, in the list's order.
    expect(seen).toEqual(await readPage('limit=1000'));
    expect(new Set(seen).size).toBe(total);
  });

  it('defaults to 100 per page and announces no next page at the end', async () => {
    for (let i = 0; i < 3; i += 1) await create({ name: `C${i}`, email: `c${i}@example.com` });
    const response = await t.app.inject({ method: 'GET', url: '/customers' });
    expect(response.json()).toHaveLength(3);
    expect(response.headers.link).toBeUndefined();
  });

  it.each([
    ['limit=0'],
    ['limit=1001'],
    ['limit=-1'],
    ['limit=abc'],
    ['limit=1.5'],
    ['limit=99999999999999999999'],
    ['after=not-a-uuid'],
    ['after=00000000-0000-4000-8000-000000000000'],
    ['color=blue'],
  ])('rejects %s with 400', async (query) => {
    expectProblem(await t.app.inject({ method: 'GET', url: `/customers?${query}` }), 400);
  });
});

describe('GET /customers/{id}', () => {
  it('answers 404 problem+json for an unknown id and 400 for a malformed one', async () => {
    const missing = await t.app.inject({
      method: 'GET',
      url: '/customers/00000000-0000-4000-8000-000000000000',
    });
    expect(expectProblem(missing, 404).detail).toContain('00000000-0000-4000-8000-000000000000');
    expectProblem(await t.app.inject({ method: 'GET', url: '/customers/../etc/passwd' }), 404);
    expectProblem(await t.app.inject({ method: 'GET', url: '/customers/42' }), 400);
  });
});
