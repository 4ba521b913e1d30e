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

interface Item {
  customer_id: string;
  kind?: string;
  idempotency_key?: string;
}
interface Result {
  status: number;
  replayed: boolean;
  body: Record<string, any>;
}

const postBatch = (payload: unknown) =>
  t.app.inject({
    method: 'POST',
    url: '/package-requests/batch',
    headers: { 'content-type': 'application/json' },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });

/** Posts a batch that must be answered 200, and answers its results. */
const batch = async (items: Item[]): Promise<Result[]> => {
  const response = await postBatch({ items });
  expect(response.statusCode, response.body).toBe(200);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  const results = (response.json() as { results: Result[] }).results;
  expect(results).toHaveLength(items.length);
  return results;
};

const create = (payload: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: 'POST',
    url: '/package-requests',
    headers: { 'content-type': 'application/json', ...headers },
    payload: JSON.stringify(payload),
  });

const countRequests = () => countRows(t.database.db, 'package_requests');

const countKeys = () => countRows(t.database.db, 'idempotency_keys');

const fingerprintOf = (customerId: string, kind = 'welcome_package') =>
  fingerprintRequest('POST', '/package-requests', { customer_id: customerId, kind });

const packageRequest = (customerId: string, kind = 'welcome_package') => ({
  id: expect.stringMatching(/^[0-9a-f-]{36}$/),
  customer_id: customerId,
  kind,
  status: 'pending',
  recipient_name: null,
  recipient_email: null,
  customer_version: null,
  created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/),
  updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/),
});

describe('POST /package-requests/batch', () => {
  it('creates every item and answers in item order, kind defaulting to welcome_package', async () => {
    const customers = [randomUUID(), randomUUID(), randomUUID()];
    const results = await batch([
      { customer_id: customers[0]! },
      { customer_id: customers[1]!, kind: 'birthday_card', idempotency_key: 'k-1' },
      { customer_id: customers[2]!, idempotency_key: 'k-2' },
    ]);
    expect(results).toEqual([
      { status: 201, replayed: false, body: packageRequest(customers[0]!) },
      { status: 201, replayed: false, body: packageRequest(customers[1]!, 'birthday_card') },
      { status: 201, replayed: false, body: packageRequest(customers[2]!) },
    ]);
    for (const result of results) {
      const fetched = await t.app.inject({
        method: 'GET',
        url: `/package-requests/${result.body.id}`,
      });
      expect(fetched.json()).toEqual(result.body);
    }
    expect(await countRequests()).toBe(3);
  });

  it('creates 500 items in one call (more than the 64 KiB other routes accept), in order', async () => {
    const items = Array.from({ length: 500 }, () => {
      const customerId = randomUUID();
      return {
        customer_id: customerId,
        kind: 'welcome_package',
        idempotency_key: `welcome-package:${customerId}`,
      };
    });
    expect(JSON.stringify({ items }).length).toBeGreaterThan(64 * 1024);
    const results = await batch(items);
    results.forEach((result, i) => {
      expect(result.status).toBe(201);
      expect(result.replayed).toBe(false);
      expect(result.body.customer_id).toBe(items[i]!.customer_id);
    });
    expect(new Set(results.map((r) => r.body.id)).size).toBe(500);
    expect(await countRequests()).toBe(500);
    expect(await countKeys()).toBe(500);
  });

  it('answers an item without a key 409 naming the existing request, like the single route', async () => {
    const customerId = randomUUID();
    const first = await create({ customer_id: customerId });
    const results = await batch([{ customer_id: customerId }]);
    const single = await create({ customer_id: customerId });
    expect(results[0]).toEqual({ status: 409, replayed: false, body: single.json() });
    const body = results[0]!.body;
    expect(body).toMatchObject({
      type: 'about:blank',
      title: 'Conflict',
      status: 409,
      code: 'package_request_exists',
      instance: '/package-requests',
      existing_request: first.json(),
    });
    expect(body.detail).toContain(first.json().id);
    expect(await countRequests()).toBe(1);
  });

  it('creates a customer and kind once when the batch repeats it; later items get 409', async () => {
    const customerId = randomUUID();
    const results = await batch([
      { customer_id: customerId },
      { customer_id: customerId, kind: 'welcome_package', idempotency_key: 'other-key' },
      { customer_id: customerId, kind: 'birthday_card' },
      { customer_id: customerId },
    ]);
    expect(results.map((r) => [r.status, r.replayed])).toEqual([
      [201, false],
      [409, false],
      [201, false],
      [409, false],
    ]);
    expect(results[1]!.body.code).toBe('package_request_exists');
    expect(results[1]!.body.existing_request).toEqual(results[0]!.body);
    expect(results[3]!.body.existing_request).toEqual(results[0]!.body);
    expect(await countRequests()).toBe(2);
    // The key stored the 409 it was given: the single route replays it.
    const single = await create({ customer_id: customerId }, { 'idempotency-key': 'other-key' });
    expectProblem(single, 409);
    expect(single.headers['idempotent-replayed']).toBe('true');
    expect(single.json()).toEqual(results[1]!.body);
  });

  it('replays in the batch the answers stored by the single route (201 and 409)', async () => {
    const created = randomUUID();
    const duplicate = randomUUID();
    await create({ customer_id: duplicate });
    const first = await create({ customer_id: created }, { 'idempotency-key': 'single-201' });
    const conflict = await create({ customer_id: duplicate }, { 'idempotency-key': 'single-409' });
    expect(first.statusCode).toBe(201);
    expectProblem(conflict, 409);
    const results = await batch([
      // The default kind spelled out is the same request.
      { customer_id: created, kind: 'welcome_package', idempotency_key: 'single-201' },
      { customer_id: duplicate, idempotency_key: 'single-409' },
    ]);
    expect(results).toEqual([
      { status: 201, replayed: true, body: first.json() },
      { status: 409, replayed: true, body: conflict.json() },
    ]);
    expect(await countRequests()).toBe(2);
  });

  it('stores answers the single route then replays, 201 and 409 alike', async () => {
    const created = randomUUID();
    const duplicate = randomUUID();
    await create({ customer_id: duplicate });
    const results = await batch([
      { customer_id: created, idempotency_key: 'batch-201' },
      { customer_id: duplicate, idempotency_key: 'batch-409' },
    ]);
    const again201 = await create(
      { customer_id: created, kind: 'welcome_package' },
      { 'idempotency-key': 'batch-201' },
    );
    expect(again201.statusCode).toBe(201);
    expect(again201.headers['idempotent-replayed']).toBe('true');
    expect(again201.headers.location).toBe(`/package-requests/${results[0]!.body.id}`);
    expect(again201.json()).toEqual(results[0]!.body);
    const again409 = await create({ customer_id: duplicate }, { 'idempotency-key': 'batch-409' });
    expectProblem(again409, 409);
    expect(again409.headers['idempotent-replayed']).toBe('true');
    expect(again409.json()).toEqual(results[1]!.body);
    expect(await countRequests()).toBe(2);
  });

  it('refuses a key first used for another request with 422, on either route', async () => {
    await create({ customer_id: randomUUID() }, { 'idempotency-key': 'from-single' });
    await batch([{ customer_id: randomUUID(), idempotency_key: 'from-batch' }]);
    const other = randomUUID();
    const results = await batch([
      { customer_id: other, idempotency_key: 'from-single' },
      { customer_id: other, kind: 'birthday_card', idempotency_key: 'from-batch' },
    ]);
    for (const result of results) {
      expect(result.status).toBe(422);
      expect(result.replayed).toBe(false);
      expect(result.body).toMatchObject({
        type: 'about:blank',
        title: 'Unprocessable Entity',
        status: 422,
        code: 'idempotency_key_reused',
        instance: '/package-requests',
      });
    }
    expect(results[0]!.body.detail).toContain('from-single');
    const single = await create({ customer_id: other }, { 'idempotency-key': 'from-batch' });
    expect(expectProblem(single, 422).code).toBe('idempotency_key_reused');
    expect(await countRequests()).toBe(2);
  });

  it('takes over a key whose request crashed once its lock expired', async () => {
    const customerId = randomUUID();
    const crashed = new IdempotencyKeys(t.database.db, { lockMs: 1 });
    const lost = await crashed.claim('crash-key', fingerprintOf(customerId));
    expect(lost.kind).toBe('claimed');
    await new Promise((resolve) => setTimeout(resolve, 5));
    const results = await batch([
      { customer_id: customerId, idempotency_key: 'crash-key' },
      { customer_id: customerId, idempotency_key: 'crash-key' },
    ]);
    expect(results[0]).toEqual({ status: 201, replayed: false, body: packageRequest(customerId) });
    expect(results[1]).toEqual({ ...results[0], replayed: true });
    // The crashed request's late completion is refused: its claim is gone.
    const late = await crashed.complete(
      t.database.db,
      'crash-key',
      (lost as { claimId: string }).claimId,
      { status: 201, body: {} },
    );
    expect(late).toBe(false);
    const single = await create({ customer_id: customerId }, { 'idempotency-key': 'crash-key' });
    expect(single.headers['idempotent-replayed']).toBe('true');
    expect(single.json()).toEqual(results[0]!.body);
    expect(await countRequests()).toBe(1);
  });

  it('answers a key repeated within a batch like a retry: same item replays, another gets 422', async () => {
    const customerId = randomUUID();
    const results = await batch([
      { customer_id: customerId, idempotency_key: 'twice' },
      { customer_id: customerId, kind: 'welcome_package', idempotency_key: 'twice' },
      { customer_id: customerId, kind: 'birthday_card', idempotency_key: 'twice' },
      { customer_id: randomUUID(), idempotency_key: 'twice' },
    ]);
    expect(results[0]).toEqual({ status: 201, replayed: false, body: packageRequest(customerId) });
    expect(results[1]).toEqual({ ...results[0], replayed: true });
    for (const result of results.slice(2)) {
      expect(result.status).toBe(422);
      expect(result.body.code).toBe('idempotency_key_reused');
    }
    expect(await countRequests()).toBe(1);
    expect(await countKeys()).toBe(1);
  });

  it('gives a batch retried after its answer was lost the same results, replayed, and no new rows', async () => {
    const existing = randomUUID();
    await create({ customer_id: existing });
    const items = [
      ...Array.from({ length: 20 }, (_, i) => ({
        customer_id: randomUUID(),
        idempotency_key: `retry-${i}`,
      })),
      { customer_id: existing, idempotency_key: 'retry-existing' },
    ];
    const first = await batch(items);
    const requestsBefore = await countRequests();
    const keysBefore = await countKeys();
    const retry = await batch(items);
    expect(retry).toEqual(first.map((result) => ({ ...result, replayed: true })));
    expect(first.every((result) => !result.replayed)).toBe(true);
    expect(await countRequests()).toBe(requestsBefore);
    expect(await countKeys()).toBe(keysBefore);
  });

  const badBodies: [string, unknown][] = [
    ['no items', { items: [] }],
    ['a missing items', {}],
    ['501 items', { items: Array.from({ length: 501 }, () => ({ customer_id: randomUUID() })) }],
    ['a non-UUID customer_id', { items: [{ customer_id: randomUUID() }, { customer_id: '42' }] }],
    ['an unknown item field', { items: [{ customer_id: randomUUID(), status: 'shipped' }] }],
    ['an unknown top-level field', { items: [{ customer_id: randomUUID() }], dry_run: true }],
    ['an uppercase kind', { items: [{ customer_id: randomUUID(), kind: 'WELCOME' }] }],
    ['an empty key', { items: [{ customer_id: randomUUID(), idempotency_key: '' }] }],
    ['a key with spaces', { items: [{ customer_id: randomUUID(), idempotency_key: 'my key' }] }],
    [
      'a 256-character key',
      { items: [{ customer_id: randomUUID(), idempotency_key: 'k'.repeat(256) }] },
    ],
    ['an array', [{ customer_id: randomUUID() }]],
    ['malformed JSON', '{"items":['],
  ];
  it.each(badBodies)('rejects %s with 400 problem+json and stores nothing', async (_, payload) => {
    expectProblem(await postBatch(payload), 400);
    expect(await countRequests()).toBe(0);
    expect(await countKeys()).toBe(0);
  });

  it('names the failing item and field in a 400', async () => {
    const problem = expectProblem(
      await postBatch({ items: [{ customer_id: randomUUID() }, { customer_id: '42' }] }),
      400,
    );
    expect(problem.errors).toEqual([
      { location: 'body', field: 'items.1.customer_id', message: 'must be a valid uuid' },
    ]);
  });

  it('refuses a body over 512 KiB with 413 naming this route’s limit', async () => {
    const payload = `{"items":[${' '.repeat(513 * 1024)}{"customer_id":"${randomUUID()}"}]}`;
    const problem = expectProblem(await postBatch(payload), 413);
    expect(problem.code).toBe('body_too_large');
    expect(problem.detail).toContain(String(512 * 1024));
    expect(await countRequests()).toBe(0);
  });

  it('counts created items and outcomes in /metrics like the single route', async () => {
    const customerId = randomUUID();
    await batch([
      { customer_id: customerId, idempotency_key: 'm-1' },
      { customer_id: customerId, idempotency_key: 'm-1' },
      { customer_id: customerId },
      { customer_id: randomUUID() },
    ]);
    const text = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toMatch(/^inventory_package_requests_created_total\{[^}]*\} 2$/m);
    expect(text).toMatch(/^inventory_create_responses_total\{[^}]*outcome="created"[^}]*\} 2$/m);
    expect(text).toMatch(/^inventory_create_responses_total\{[^}]*outcome="duplicate"[^}]*\} 1$/m);
    expect(text).toMatch(/^inventory_create_responses_total\{[^}]*outcome="replayed"[^}]*\} 1$/m);
  });

  it('is documented in /openapi.json with its per-item results', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const operation = doc.paths['/package-requests/batch'].post;
    expect(operation.tags).toEqual(['package requests']);
    expect(operation.summary).toMatch(/many customers/);
    expect(operation.description).toContain('idempotency_key_reused');
    const body = operation.requestBody.content['application/json'].schema;
    expect(body.properties.items).toMatchObject({ minItems: 1, maxItems: 500 });
    // One item shape per op: create (the default), update, cancel, ship.
    const shapes = body.properties.items.items.anyOf;
    expect(shapes.map((shape: any) => Object.keys(shape.properties))).toEqual([
      [
        'op',
        'customer_id',
        'kind',
        'recipient_name',
        'recipient_email',
        'customer_version',
        'idempotency_key',
      ],
      ['op', 'id', 'recipient_name', 'recipient_email', 'customer_version', 'idempotency_key'],
      ['op', 'id', 'idempotency_key'],
      ['op', 'id', 'idempotency_key'],
    ]);
    expect(shapes[0].required).toEqual(['customer_id']);
    const ok = operation.responses['200'].content['application/json'].schema;
    expect(ok.properties.results.items.required).toEqual(['status', 'replayed', 'body']);
    expect(operation.responses).toHaveProperty('400');
    expect(operation.responses).toHaveProperty('409');
    expect(operation.responses['413'].description).toContain('512 KiB');
  });
});
