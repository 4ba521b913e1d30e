import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { expectProblem } from '../support/apps.js';
import { postgresUrlFor } from '../support/databases.js';
import { useInventory, type Result } from '../support/inventory.js';

const inventory = useInventory();
const { patch, cancel, ship, get, pending, count } = inventory;

/** Posts a batch that must be answered 200, and answers its results. */
const batch = async (items: object[]): Promise<Result[]> => {
  const response = await inventory.batch({ items });
  expect(response.statusCode, response.body).toBe(200);
  const results = (response.json() as { results: Result[] }).results;
  expect(results).toHaveLength(items.length);
  return results;
};

const key = (value: string) => ({ 'idempotency-key': value });

describe('POST /package-requests/batch with update, cancel and ship items', () => {
  it('answers each item exactly as its single route would, in item order', async () => {
    const toUpdate = await pending({ customer_version: 1 });
    const toCancel = await pending();
    const toShip = await pending({ recipient_name: 'Jane Doe' });
    const shipped = await pending();
    await ship(shipped.id);
    const unknown = randomUUID();
    const customerId = randomUUID();
    const results = await batch([
      { op: 'update', id: toUpdate.id, recipient_email: 'new@example.com', customer_version: 2 },
      { op: 'cancel', id: toCancel.id },
      { customer_id: customerId },
      { op: 'ship', id: toShip.id },
      { op: 'cancel', id: shipped.id },
      { op: 'update', id: unknown, recipient_name: 'Nobody', customer_version: 1 },
      { op: 'update', id: toUpdate.id, recipient_name: 'Too Late', customer_version: 1 },
    ]);
    expect(results.map((result) => [result.status, result.replayed])).toEqual([
      [200, false],
      [200, false],
      [201, false],
      [200, false],
      [409, false],
      [404, false],
      [409, false],
    ]);
    // What was changed is what the single routes now read.
    for (const [index, id] of [
      [0, toUpdate.id],
      [1, toCancel.id],
      [3, toShip.id],
    ] as const) {
      expect(results[index]!.body).toEqual((await get(id)).json());
    }
    expect(results[0]!.body).toMatchObject({
      recipient_email: 'new@example.com',
      customer_version: 2,
    });
    expect(results[1]!.body.status).toBe('cancelled');
    expect(results[2]!.body).toMatchObject({ customer_id: customerId, status: 'pending' });
    expect(results[3]!.body).toMatchObject({ status: 'shipped', recipient_name: 'Jane Doe' });
    // The refusals are those of the single routes, word for word.
    expect(results[4]!.body).toEqual(expectProblem(await cancel(shipped.id), 409));
    expect(results[5]!.body).toEqual(
      expectProblem(await patch(unknown, { recipient_name: 'Nobody', customer_version: 1 }), 404),
    );
    expect(results[6]!.body).toEqual(
      expectProblem(
        await patch(toUpdate.id, { recipient_name: 'Too Late', customer_version: 1 }),
        409,
      ),
    );
    expect(results[6]!.body).toMatchObject({
      code: 'customer_version_stale',
      current_customer_version: 2,
    });
  });

  it('runs the changes of one request in item order', async () => {
    const { id } = await pending({ customer_version: 1 });
    const results = await batch([
      { op: 'update', id, recipient_name: 'Two', customer_version: 2 },
      { op: 'update', id, recipient_name: 'Three', customer_version: 3 },
      { op: 'cancel', id },
      { op: 'update', id, recipient_name: 'Four', customer_version: 4 },
      { op: 'ship', id },
    ]);
    expect(
      results.map((result) => [result.status, result.body.code ?? result.body.status]),
    ).toEqual([
      [200, 'pending'],
      [200, 'pending'],
      [200, 'cancelled'],
      [409, 'package_request_cancelled'],
      [409, 'package_request_cancelled'],
    ]);
    // The cancel erased the recipient the updates before it set.
    expect((await get(id)).json()).toMatchObject({
      recipient_name: null,
      customer_version: 3,
      status: 'cancelled',
    });
  });

  it('shares keys with the single routes: each replays what the other answered', async () => {
    const a = await pending({ customer_version: 1 });
    const b = await pending();
    const update = { recipient_name: 'Ann', customer_version: 2 };
    const [fromBatch] = await batch([{ op: 'update', id: a.id, ...update, idempotency_key: 'u' }]);
    const single = await patch(a.id, update, key('u'));
    expect(single.headers['idempotent-replayed']).toBe('true');
    expect(single.json()).toEqual(fromBatch!.body);

    const cancelled = await cancel(b.id, key('c'));
    const results = await batch([
      { op: 'cancel', id: b.id, idempotency_key: 'c' },
      { op: 'ship', id: b.id, idempotency_key: 'c' },
      { op: 'update', id: b.id, ...update, idempotency_key: 'u' },
    ]);
    expect(results[0]).toEqual({ status: 200, replayed: true, body: cancelled.json() });
    for (const result of results.slice(1)) {
      expect(result).toMatchObject({ status: 422, body: { code: 'idempotency_key_reused' } });
    }
    expect(results[2]!.body.instance).toBe(`/package-requests/${b.id}`);
    expect((await get(b.id)).json().status).toBe('cancelled');
  });

  it('stores no answer for an unknown id under an item’s key', async () => {
    const unknown = randomUUID();
    const results = await batch([
      { op: 'ship', id: unknown, idempotency_key: 'typo' },
      { op: 'ship', id: unknown, idempotency_key: 'typo' },
    ]);
    for (const result of results) {
      expect(result).toMatchObject({ status: 404, replayed: false, body: { code: 'not_found' } });
    }
    expect(await count('idempotency_keys')).toBe(0);
  });

  it('answers an item without op as a create: the same request as op create', async () => {
    const customerId = randomUUID();
    const [first] = await batch([{ customer_id: customerId, idempotency_key: 'new' }]);
    const [again] = await batch([
      { op: 'create', customer_id: customerId, kind: 'welcome_package', idempotency_key: 'new' },
    ]);
    expect(again).toEqual({ ...first, replayed: true });
  });

  it.runIf(postgresUrlFor('inventory'))(
    'runs concurrent batches changing the same requests in opposite orders without deadlock',
    async () => {
      const requests = await Promise.all(
        Array.from({ length: 6 }, () => pending({ customer_version: 1 })),
      );
      const items = (version: number) =>
        requests.map(({ id }) => ({
          op: 'update',
          id,
          recipient_name: `V${version}`,
          customer_version: version,
        }));
      for (let round = 2; round < 12; round += 2) {
        const responses = await Promise.all([
          inventory.batch({ items: items(round) }),
          inventory.batch({ items: items(round + 1).reverse() }),
        ]);
        for (const response of responses) expect(response.statusCode, response.body).toBe(200);
      }
      for (const { id } of requests) {
        expect((await get(id)).json()).toMatchObject({
          recipient_name: 'V11',
          customer_version: 11,
        });
      }
    },
  );

  it.each([
    [
      'an unknown op',
      { op: 'delete', id: randomUUID() },
      [['items.0.op', 'must be one of "create", "update", "cancel", "ship"']],
    ],
    [
      'an update without an id',
      { op: 'update', recipient_name: 'A', customer_version: 2 },
      [['items.0.id', 'is required']],
    ],
    [
      'an update without a recipient field',
      { op: 'update', id: randomUUID(), customer_version: 2, idempotency_key: 'k' },
      [['items.0', 'must have at least one of recipient_name, recipient_email']],
    ],
    [
      'a cancel with a recipient',
      { op: 'cancel', id: randomUUID(), recipient_name: 'A' },
      [['items.0.recipient_name', 'is not a known field; remove it']],
    ],
    [
      'a ship with a non-UUID id',
      { op: 'ship', id: '42' },
      [['items.0.id', 'must be a valid uuid']],
    ],
    [
      'a create with an id',
      { customer_id: randomUUID(), id: randomUUID() },
      [['items.0.id', 'is not a known field; remove it']],
    ],
  ])('refuses %s with 400 naming the item’s field, changing nothing', async (_, item, errors) => {
    const created = await pending();
    const problem = expectProblem(
      await inventory.batch({ items: [item, { op: 'cancel', id: created.id }] }),
      400,
    );
    expect(
      (problem.errors as { field: string; message: string }[]).map((e) => [e.field, e.message]),
    ).toEqual(errors);
    expect((await get(created.id)).json()).toEqual(created);
    expect(await count('idempotency_keys')).toBe(0);
  });
});
