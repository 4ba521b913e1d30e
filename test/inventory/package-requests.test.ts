import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fingerprintRequest, IdempotencyKeys } from '../../src/inventory/idempotency.js';
import type { InventoryTables } from '../../src/inventory/migrations.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { countRows } from '../support/databases.js';

let t: TestApp<InventoryTables>;
beforeEach(async () => {
  t = await createTestApp(inventoryService);
});
afterEach(async () => {
  await t.close();
});

const create = (payload: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: 'POST',
    url: '/package-requests',
    headers: { 'content-type': 'application/json', ...headers },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });

const countRequests = () => countRows(t.database.db, 'package_requests');

describe('POST /package-requests', () => {
  it('creates a pending welcome package by default, with a Location header', async () => {
    const customerId = randomUUID();
    const response = await create({ customer_id: customerId });
    expect(response.statusCode).toBe(201);
    const body = response.json();
    expect(body).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      customer_id: customerId,
      kind: 'welcome_package',
      status: 'pending',
      recipient_name: null,
      recipient_email: null,
      customer_version: null,
      created_at: expect.any(String),
      updated_at: body.created_at,
    });
    expect(response.headers.location).toBe(`/package-requests/${body.id}`);
    const fetched = await t.app.inject({ method: 'GET', url: response.headers.location as string });
    expect(fetched.json()).toEqual(body);
  });

  it('allows one request per customer and kind; a second gets 409 naming the first', async () => {
    const customerId = randomUUID();
    const first = (await create({ customer_id: customerId })).json();
    const again = await create({ customer_id: customerId, kind: 'welcome_package' });
    const problem = expectProblem(again, 409);
    expect(problem.code).toBe('package_request_exists');
    expect(problem.existing_request).toEqual(first);
    expect(problem.detail).toContain(first.id);
    expect(again.headers.location).toBe(`/package-requests/${first.id}`);
    const otherKind = await create({ customer_id: customerId, kind: 'birthday_card' });
    expect(otherKind.statusCode).toBe(201);
    expect(await countRequests()).toBe(2);
  });

  it('lets exactly one of many concurrent creates for one customer win, without keys', async () => {
    const customerId = randomUUID();
    const responses = await Promise.all(
      Array.from({ length: 30 }, () => create({ customer_id: customerId })),
    );
    expect(responses.filter((r) => r.statusCode === 201)).toHaveLength(1);
    expect(responses.filter((r) => r.statusCode === 409)).toHaveLength(29);
    expect(await countRequests()).toBe(1);
  });

  const badBodies: [string, unknown][] = [
    ['missing customer_id', {}],
    ['a non-UUID customer_id', { customer_id: '42' }],
    ['a numeric customer_id', { customer_id: 42 }],
    ['a null customer_id', { customer_id: null }],
    ['an uppercase kind', { customer_id: randomUUID(), kind: 'WELCOME' }],
    ['a kind with spaces', { customer_id: randomUUID(), kind: 'welcome package' }],
    ['an empty kind', { customer_id: randomUUID(), kind: '' }],
    ['a 65-character kind', { customer_id: randomUUID(), kind: 'k'.repeat(65) }],
    ['a client-chosen status', { customer_id: randomUUID(), status: 'shipped' }],
    ['a client-chosen id', { customer_id: randomUUID(), id: randomUUID() }],
    [
      'a client-chosen created_at',
      { customer_id: randomUUID(), created_at: '2020-01-01T00:00:00Z' },
    ],
    ['an array', [{ customer_id: randomUUID() }]],
    ['malformed JSON', '{"customer_id":'],
    ['a NUL byte', `{"customer_id":"${randomUUID()}\\u0000"}`],
  ];
  it.each(badBodies)('rejects %s with 400 problem+json and stores nothing', async (_, payload) => {
    expectProblem(await create(payload), 400);
    expect(await countRequests()).toBe(0);
  });

  it.each([
    ['an empty key', ''],
    ['a key with spaces', 'my key'],
    ['a 256-character key', 'k'.repeat(256)],
    ['a key with non-ASCII', 'clé'],
  ])('rejects %s as Idempotency-Key with 400 and stores nothing', async (_, key) => {
    expectProblem(await create({ customer_id: randomUUID() }, { 'idempotency-key': key }), 400);
    expect(await countRequests()).toBe(0);
  });
});

describe('Idempotency-Key', () => {
  it('replays the first response, status and body, for a retry with the same key and body', async () => {
    const customerId = randomUUID();
    const key = `welcome-package:${customerId}`;
    const first = await create({ customer_id: customerId }, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    // The default kind spelled out is the same request.
    const retry = await create(
      { customer_id: customerId, kind: 'welcome_package' },
      { 'idempotency-key': key },
    );
    expect(retry.statusCode).toBe(201);
    expect(retry.json()).toEqual(first.json());
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.headers.location).toBe(first.headers.location);
    expect(await countRequests()).toBe(1);
  });

  it('refuses the same key with a different body with 422 and stores nothing new', async () => {
    const key = 'reused-key';
    await create({ customer_id: randomUUID() }, { 'idempotency-key': key });
    const problem = expectProblem(
      await create({ customer_id: randomUUID() }, { 'idempotency-key': key }),
      422,
    );
    expect(problem.code).toBe('idempotency_key_reused');
    expect(await countRequests()).toBe(1);
  });

  it('replays a 409 duplicate answer too: the key remembers what it was told', async () => {
    const customerId = randomUUID();
    await create({ customer_id: customerId });
    const first = await create({ customer_id: customerId }, { 'idempotency-key': 'k-409' });
    expectProblem(first, 409);
    const retry = await create({ customer_id: customerId }, { 'idempotency-key': 'k-409' });
    expectProblem(retry, 409);
    expect(retry.json()).toEqual(first.json());
    expect(retry.headers['idempotent-replayed']).toBe('true');
  });

  it('gives 50 concurrent creates with one key exactly one row and exactly one fresh 201', async () => {
    const customerId = randomUUID();
    const responses = await Promise.all(
      Array.from({ length: 50 }, () =>
        create({ customer_id: customerId }, { 'idempotency-key': `welcome-package:${customerId}` }),
      ),
    );
    const fresh = responses.filter(
      (r) => r.statusCode === 201 && r.headers['idempotent-replayed'] === undefined,
    );
    expect(fresh).toHaveLength(1);
    const id = fresh[0]!.json().id;
    for (const response of responses) {
      if (response.statusCode === 201) {
        // Any other 201 is a replay of the same answer, never a second request.
        expect(response.json().id).toBe(id);
      } else {
        expect(expectProblem(response, 409).code).toBe('idempotency_key_in_flight');
        expect(response.headers['retry-after']).toBe('1');
      }
    }
    expect(await countRequests()).toBe(1);
  });

  it('answers 409 with Retry-After while the first request with the key is still running', async () => {
    const customerId = randomUUID();
    const keys = new IdempotencyKeys(t.database.db);
    const payload = { customer_id: customerId, kind: 'welcome_package' };
    await keys.claim('slow-key', fingerprintRequest('POST', '/package-requests', payload));
    const response = await create(payload, { 'idempotency-key': 'slow-key' });
    expect(expectProblem(response, 409).code).toBe('idempotency_key_in_flight');
    expect(response.headers['retry-after']).toBe('1');
    expect(await countRequests()).toBe(0);
  });

  it('takes over a key whose first request crashed once its lock expires', async () => {
    const customerId = randomUUID();
    const payload = { customer_id: customerId, kind: 'welcome_package' };
    const fingerprint = fingerprintRequest('POST', '/package-requests', payload);
    const crashed = new IdempotencyKeys(t.database.db, { lockMs: 1 });
    const lost = await crashed.claim('crash-key', fingerprint);
    expect(lost.kind).toBe('claimed');
    await new Promise((resolve) => setTimeout(resolve, 5));
    const response = await create(payload, { 'idempotency-key': 'crash-key' });
    expect(response.statusCode).toBe(201);
    // The crashed request's late completion is refused: its claim is gone.
    const late = await crashed.complete(
      t.database.db,
      'crash-key',
      (lost as { claimId: string }).claimId,
      {
        status: 201,
        body: {},
      },
    );
    expect(late).toBe(false);
    expect(await countRequests()).toBe(1);
  });

  it('frees the key when the request fails without an answer, so the retry runs', async () => {
    const customerId = randomUUID();
    const keys = new IdempotencyKeys(t.database.db);
    const payload = { customer_id: customerId, kind: 'welcome_package' };
    const fingerprint = fingerprintRequest('POST', '/package-requests', payload);
    const claim = await keys.claim('failed-key', fingerprint);
    await keys.release('failed-key', (claim as { claimId: string }).claimId);
    const response = await create(payload, { 'idempotency-key': 'failed-key' });
    expect(response.statusCode).toBe(201);
  });
});

describe('GET /package-requests', () => {
  it('pages through all requests, or one customer’s, with no gaps or repeats', async () => {
    const customerA = randomUUID();
    const all: string[] = [];
    const ofA: string[] = [];
    for (let i = 0; i < 12; i += 1) {
      const customerId = i % 3 === 0 ? customerA : randomUUID();
      const kind = i % 3 === 0 ? `kind_${i}` : 'welcome_package';
      const id = (await create({ customer_id: customerId, kind })).json().id;
      all.push(id);
      if (customerId === customerA) ofA.push(id);
    }
    const collect = async (first: string) => {
      const ids: string[] = [];
      let url: string | undefined = first;
      while (url) {
        const response = await t.app.inject({ method: 'GET', url });
        expect(response.statusCode).toBe(200);
        ids.push(...(response.json() as { id: string }[]).map((r) => r.id));
        const link = response.headers.link as string | undefined;
        url = link ? /^<([^>]+)>; rel="next"$/.exec(link)?.[1] : undefined;
      }
      return ids;
    };
    expect(await collect('/package-requests?limit=5')).toEqual(all);
    expect(await collect(`/package-requests?customer_id=${customerA}&limit=3`)).toEqual(ofA);
    expect(await collect(`/package-requests?customer_id=${randomUUID()}`)).toEqual([]);
  });

  it.each([['limit=0'], ['limit=5000'], ['customer_id=abc'], ['after=zzz'], ['sort=desc']])(
    'rejects %s with 400',
    async (query) => {
      expectProblem(await t.app.inject({ method: 'GET', url: `/package-requests?${query}` }), 400);
    },
  );

  it('answers 404 for an unknown id', async () => {
    expectProblem(
      await t.app.inject({ method: 'GET', url: `/package-requests/${randomUUID()}` }),
      404,
    );
  });
});
