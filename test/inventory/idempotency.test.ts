import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IdempotencyKeys } from '../../src/inventory/idempotency.js';
import { fingerprintOf } from '../../src/inventory/operations.js';
import { expectProblem } from '../support/apps.js';
import { useInventory } from '../support/inventory.js';

const inventory = useInventory();
const { patch, cancel, ship, get, pending, count } = inventory;

const key = (value: string) => ({ 'idempotency-key': value });

describe('Idempotency-Key on PATCH, cancel and ship', () => {
  it('replays a PATCH answered under a key, even after the request changed again', async () => {
    const { id } = await pending({ customer_version: 1 });
    const body = { recipient_name: 'Jane Smith', customer_version: 2 };
    const first = await patch(id, body, key('rename-2'));
    expect(first.statusCode).toBe(200);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    await patch(id, { recipient_name: 'Jane Jones', customer_version: 3 });
    // The same fields in another order are the same request.
    const retry = await patch(
      id,
      { customer_version: 2, recipient_name: 'Jane Smith' },
      key('rename-2'),
    );
    expect(retry.statusCode).toBe(200);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.json()).toEqual(first.json());
    expect((await get(id)).json()).toMatchObject({
      recipient_name: 'Jane Jones',
      customer_version: 3,
    });
  });

  it('replays a 409 too: a stale update and a refused cancel are remembered as answered', async () => {
    const { id } = await pending({ customer_version: 5 });
    const stale = await patch(id, { recipient_name: 'Old', customer_version: 4 }, key('stale'));
    expect(expectProblem(stale, 409).code).toBe('customer_version_stale');
    const staleAgain = await patch(
      id,
      { recipient_name: 'Old', customer_version: 4 },
      key('stale'),
    );
    expect(staleAgain.headers['idempotent-replayed']).toBe('true');
    expect(staleAgain.json()).toEqual(stale.json());

    await ship(id);
    const refused = await cancel(id, key('cancel-late'));
    expect(expectProblem(refused, 409).code).toBe('package_request_shipped');
    const refusedAgain = await cancel(id, key('cancel-late'));
    expectProblem(refusedAgain, 409);
    expect(refusedAgain.headers['idempotent-replayed']).toBe('true');
    expect(refusedAgain.json()).toEqual(refused.json());
  });

  it('replays a cancel and a ship answered under a key', async () => {
    for (const send of [cancel, ship]) {
      const { id } = await pending();
      const first = await send(id, key(`once:${id}`));
      expect(first.statusCode).toBe(200);
      const retry = await send(id, key(`once:${id}`), {});
      expect(retry.statusCode).toBe(200);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(retry.json()).toEqual(first.json());
    }
  });

  it('refuses a key reused with another body, another id or another route with 422, changing nothing', async () => {
    const a = await pending({ customer_version: 1 });
    const b = await pending({ customer_version: 1 });
    await patch(a.id, { recipient_name: 'Ann', customer_version: 2 }, key('k'));
    const refusals = [
      await patch(a.id, { recipient_name: 'Bob', customer_version: 2 }, key('k')),
      await patch(b.id, { recipient_name: 'Ann', customer_version: 2 }, key('k')),
      await cancel(a.id, key('k')),
      await ship(a.id, key('k')),
      await inventory.create({ customer_id: randomUUID() }, key('k')),
    ];
    for (const refusal of refusals) {
      expect(expectProblem(refusal, 422).code).toBe('idempotency_key_reused');
    }
    await cancel(a.id, key('c'));
    expect(expectProblem(await ship(a.id, key('c')), 422).code).toBe('idempotency_key_reused');
    expect(expectProblem(await cancel(b.id, key('c')), 422).code).toBe('idempotency_key_reused');
    expect((await get(a.id)).json()).toMatchObject({ customer_version: 2, status: 'cancelled' });
    expect((await get(b.id)).json()).toEqual(b);
  });

  it('stores no answer for an unknown id: the key stays free for the request meant', async () => {
    const unknown = randomUUID();
    const body = { recipient_name: 'Ann', customer_version: 2 };
    expectProblem(await patch(unknown, body, key('typo')), 404);
    expectProblem(await cancel(unknown, key('typo')), 404);
    expect(await count('idempotency_keys')).toBe(0);
    const { id } = await pending();
    const meant = await patch(id, body, key('typo'));
    expect(meant.statusCode).toBe(200);
    expect(meant.headers['idempotent-replayed']).toBeUndefined();
    expect(await count('idempotency_keys')).toBe(1);
  });

  it('answers 409 with Retry-After while the first request with the key is still running', async () => {
    const { id } = await pending({ customer_version: 1 });
    const change = { recipient_name: 'Ann', customer_version: 2 };
    const keys = new IdempotencyKeys(inventory.test().database.db);
    await keys.claim('slow', fingerprintOf({ op: 'update', id, change }));
    await keys.claim('slow-ship', fingerprintOf({ op: 'ship', id }));
    for (const response of [
      await patch(id, change, key('slow')),
      await ship(id, key('slow-ship')),
    ]) {
      expect(expectProblem(response, 409).code).toBe('idempotency_key_in_flight');
      expect(response.headers['retry-after']).toBe('1');
    }
    expect((await get(id)).json()).toMatchObject({ status: 'pending', customer_version: 1 });
  });

  it('gives 20 concurrent cancels with one key one change and one fresh answer', async () => {
    const { id } = await pending();
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => cancel(id, key(`leave:${id}`))),
    );
    const fresh = responses.filter(
      (r) => r.statusCode === 200 && r.headers['idempotent-replayed'] === undefined,
    );
    expect(fresh).toHaveLength(1);
    for (const response of responses) {
      if (response.statusCode === 200) expect(response.json()).toEqual(fresh[0]!.json());
      else expect(expectProblem(response, 409).code).toBe('idempotency_key_in_flight');
    }
  });
});
