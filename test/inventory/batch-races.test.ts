import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprintRequest, IdempotencyKeys } from '../../src/inventory/idempotency.js';
import { expectProblem } from '../support/apps.js';
import { postgresUrlFor } from '../support/databases.js';
import { useInventory, type Result } from '../support/inventory.js';

// Batches racing single requests and each other for the same idempotency keys.

const inventory = useInventory();
const postBatch = (payload: unknown) => inventory.batch(payload);
const create = (payload: unknown, headers: Record<string, string> = {}) =>
  inventory.create(payload, headers);
const countRequests = () => inventory.count('package_requests');
const countKeys = () => inventory.count('idempotency_keys');
const { pending } = inventory;

const fingerprintOf = (customerId: string) =>
  fingerprintRequest('POST', '/package-requests', {
    customer_id: customerId,
    kind: 'welcome_package',
  });

/** Posts a batch that must be answered 200, and answers its results. */
const batch = async (items: object[]): Promise<Result[]> => {
  const response = await postBatch({ items });
  expect(response.statusCode, response.body).toBe(200);
  return (response.json() as { results: Result[] }).results;
};

describe('POST /package-requests/batch, racing', () => {
  it('answers 409 in flight for a key a running request holds, and runs the other items', async () => {
    const held = randomUUID();
    const other = randomUUID();
    const keys = new IdempotencyKeys(inventory.test().database.db);
    const claim = await keys.claim('held-key', fingerprintOf(held));
    expect(claim.kind).toBe('claimed');
    const results = await batch([
      { customer_id: held, idempotency_key: 'held-key' },
      { customer_id: other, idempotency_key: 'free-key' },
      { customer_id: held, idempotency_key: 'held-key' },
    ]);
    expect(results[0]).toEqual({
      status: 409,
      replayed: false,
      body: expect.objectContaining({ status: 409, code: 'idempotency_key_in_flight' }),
    });
    expect(results[1]).toMatchObject({ status: 201, replayed: false });
    expect(results[2]).toEqual(results[0]);
    expect(await countRequests()).toBe(1);
    // The holder still owns the key and can complete it.
    expect(
      await keys.complete(
        inventory.test().database.db,
        'held-key',
        (claim as { claimId: string }).claimId,
        {
          status: 201,
          body: {},
        },
      ),
    ).toBe(true);
  });

  it('gives concurrent single requests and batches with the same keys one row per customer', async () => {
    for (let round = 0; round < 5; round += 1) {
      const customers = Array.from({ length: 8 }, () => randomUUID());
      const items = customers.map((customerId) => ({
        customer_id: customerId,
        idempotency_key: `race:${customerId}`,
      }));
      const [batchA, batchB, ...singles] = await Promise.all([
        postBatch({ items }),
        postBatch({ items: [...items].reverse() }),
        ...items.map((item) =>
          create({ customer_id: item.customer_id }, { 'idempotency-key': item.idempotency_key }),
        ),
      ]);
      // Every 201 for a customer, fresh or replayed, names the same request.
      const ids = new Map<string, Set<string>>(customers.map((c) => [c, new Set<string>()]));
      const seen = (status: number, body: Record<string, any>) => {
        if (status === 201) ids.get(body.customer_id)!.add(body.id);
        else expect(body.code).toBe('idempotency_key_in_flight');
      };
      for (const response of [batchA!, batchB!]) {
        if (response.statusCode === 409) {
          // Concurrent requests won the batch's keys three times in a row; the whole call retries.
          expect(expectProblem(response, 409).code).toBe('idempotency_key_in_flight');
          expect(response.headers['retry-after']).toBe('1');
          continue;
        }
        expect(response.statusCode).toBe(200);
        for (const result of (response.json() as { results: Result[] }).results) {
          seen(result.status, result.body);
        }
      }
      for (const response of singles) seen(response.statusCode, response.json());
      for (const set of ids.values()) expect(set.size).toBeLessThanOrEqual(1);
      expect(await countRequests()).toBeLessThanOrEqual(8 * (round + 1));
      // Retrying everything that was refused settles every customer on its one request.
      const settled = await batch(items);
      for (const result of settled) {
        expect(result.status).toBe(201);
        const known = ids.get(result.body.customer_id)!;
        if (known.size > 0) expect(known.has(result.body.id)).toBe(true);
      }
      expect(await countRequests()).toBe(8 * (round + 1));
    }
  });

  it.runIf(postgresUrlFor('inventory'))(
    'gives a single request racing a batch for one key one row, run many times in parallel',
    async () => {
      const rounds = Array.from({ length: 20 }, async () => {
        const customerId = randomUUID();
        const key = `race:${customerId}`;
        const [single, response] = await Promise.all([
          create({ customer_id: customerId }, { 'idempotency-key': key }),
          postBatch({
            items: [
              { customer_id: randomUUID() },
              { customer_id: customerId, idempotency_key: key },
            ],
          }),
        ]);
        return { customerId, single, response };
      });
      for (const { customerId, single, response } of await Promise.all(rounds)) {
        const rows = await inventory
          .test()
          .database.db.selectFrom('package_requests')
          .select('id')
          .where('customer_id', '=', customerId)
          .execute();
        expect(rows).toHaveLength(1);
        const answers: [number, Record<string, any>][] = [[single.statusCode, single.json()]];
        if (response.statusCode === 200) {
          const result = (response.json() as { results: Result[] }).results[1]!;
          answers.push([result.status, result.body]);
        } else {
          expect(expectProblem(response, 409).code).toBe('idempotency_key_in_flight');
        }
        for (const [status, body] of answers) {
          if (status === 201) expect(body.id).toBe(rows[0]!.id);
          else expect(body.code).toBe('idempotency_key_in_flight');
        }
      }
    },
  );

  it.runIf(postgresUrlFor('inventory'))(
    'never deadlocks batches whose creates name the requests the other one changes',
    async () => {
      for (let round = 0; round < 10; round += 1) {
        const [a, b] = await Promise.all([pending(), pending()]);
        // Each batch answers its duplicate create with one request and cancels the other.
        const [first, second] = await Promise.all([
          postBatch({ items: [{ customer_id: a.customer_id }, { op: 'cancel', id: b.id }] }),
          postBatch({ items: [{ customer_id: b.customer_id }, { op: 'cancel', id: a.id }] }),
        ]);
        for (const response of [first, second]) {
          expect(response.statusCode, response.body).toBe(200);
          const results = (response.json() as { results: Result[] }).results;
          expect(results.map((result) => result.status)).toEqual([409, 200]);
        }
      }
    },
  );
});

describe('IdempotencyKeys.answerMany', () => {
  it('runs the batch again when a key is claimed meanwhile, and gives up with 409 after 3 tries', async () => {
    const keys = new IdempotencyKeys(inventory.test().database.db);
    let runs = 0;
    const attempt = keys.answerMany(
      [{ key: 'contested', fingerprint: 'f' }, { fingerprint: 'g' }],
      async (trx, indexes) => {
        runs += 1;
        expect(indexes).toEqual([0, 1]);
        // What a concurrent request claiming the key between the batch's read and write does.
        await trx
          .insertInto('idempotency_keys')
          .values({
            key: 'contested',
            request_fingerprint: 'f',
            state: 'in_flight',
            claim_id: randomUUID(),
            locked_until: new Date(Date.now() + 30_000).toISOString(),
            created_at: new Date().toISOString(),
          })
          .execute();
        return indexes.map(() => ({ status: 201, body: {} }));
      },
    );
    await expect(attempt).rejects.toMatchObject({
      status: 409,
      code: 'idempotency_key_in_flight',
      headers: { 'retry-after': '1' },
    });
    expect(runs).toBe(3);
    // Every attempt was rolled back.
    expect(await countKeys()).toBe(0);
  });
});
