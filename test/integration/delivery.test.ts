import { randomUUID } from 'node:crypto';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logging.js';
import { migrate } from '../../src/core/migrations.js';
import type { RetryPolicy } from '../../src/core/backoff.js';
import type { CircuitState } from '../../src/integration/circuit.js';
import { DeliveryWorker } from '../../src/integration/delivery.js';
import type { FoundRequest, PackageChange } from '../../src/integration/inventory-client.js';
import { createIntegrationMetrics } from '../../src/integration/metrics.js';
import { integrationMigrations, type IntegrationTables } from '../../src/integration/migrations.js';
import type { NewDelivery } from '../../src/integration/store/new-delivery.js';
import { createSyncStore, type SyncStore } from '../../src/integration/store/sync-store.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';

let database: TestDatabase<IntegrationTables>;
let store: SyncStore;
let worker: DeliveryWorker | undefined;
/** Customer ids of every call the worker made to "Inventory", one array per call. */
let calls: string[][];
/** When true, "Inventory" never answers: a call ends only when the worker abandons it. */
let hanging: boolean;
/** What "Inventory" answers a change; by default it creates a pending package at its version. */
let inventory: (change: PackageChange) => FoundRequest;
/** The circuit breaker's state the worker reads. */
let circuit: CircuitState;

const createsPackage = (change: PackageChange): FoundRequest => ({
  request: {
    id: randomUUID(),
    status: 'pending' as const,
    customer_version: 'version' in change ? change.version : null,
  },
  created: true,
});

const startWorker = (
  policy: RetryPolicy = { maxAttempts: 3, deadLetterAfterMs: 0, baseMs: 10, maxDelayMs: 100 },
) =>
  new DeliveryWorker({
    store,
    apply: async (changes, _headers, abandoned) => {
      calls.push(changes.map((change) => change.customerId));
      if (hanging) {
        await new Promise((_resolve, reject) =>
          abandoned.addEventListener('abort', () => reject(new Error('aborted'))),
        );
      }
      return changes.map((change) => inventory(change));
    },
    circuitState: () => circuit,
    policy,
    concurrency: 2,
    batchSize: 10,
    claimMs: 30_000,
    circuitResetMs: 1_000,
    instanceId: 'instance-a',
    logger: createLogger({ service: 'integration', level: 'silent' }),
    metrics: createIntegrationMetrics(new Registry(), store.readModels, store.controls),
    // Long, so only a hand-off (not the loop's own look for due work) can send within the test.
    idleMs: 60_000,
  });

beforeEach(async () => {
  database = await createTestDatabase<IntegrationTables>('integration');
  await migrate(database, integrationMigrations);
  store = createSyncStore(database);
  calls = [];
  hanging = false;
  inventory = createsPackage;
  circuit = 'closed';
  worker = startWorker();
});
afterEach(async () => {
  await worker?.stop();
  await database.drop();
});

const pushed = (n: number): NewDelivery => ({
  customerId: randomUUID(),
  customerName: `Pushed ${n}`,
  customerEmail: `pushed${n}@example.com`,
  customerVersion: 1,
  deletedAt: null,
  customerCreatedAt: Date.now(),
  changedAt: Date.now(),
  eventType: 'customer.created',
  eventId: randomUUID(),
  source: 'webhook',
});

const rowOf = (customerId: string) =>
  database.db
    .selectFrom('deliveries')
    .selectAll()
    .where('customer_id', '=', customerId)
    .executeTakeFirstOrThrow();
const stateOf = async (customerId: string) => (await rowOf(customerId)).state;

describe('pushed customers', () => {
  it('are sent at once by the instance that recorded them, and delivered once', async () => {
    worker!.start();
    // Let the loop's first look (nothing due yet) pass, so the next send can only be a hand-off.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const item = pushed(1);
    expect(await worker!.recordPushed({ id: randomUUID(), source: 'webhook' }, [item])).toEqual([
      item,
    ]);
    await waitUntil(
      async () => (await stateOf(item.customerId)) === 'delivered',
      5_000,
      'delivered',
    );
    expect(calls).toEqual([[item.customerId]]);
    // The same customer pushed again (another message id) is not sent again.
    expect(await worker!.recordPushed({ id: randomUUID(), source: 'webhook' }, [item])).toEqual([]);
    expect(calls).toHaveLength(1);
  });

  it('pushed together share a transaction and a call (on SQLite one of each); a redelivery among them adds nothing', async () => {
    worker!.start();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const items = [1, 2, 3].map(pushed);
    const repeated = randomUUID();
    const answers = await Promise.all([
      worker!.recordPushed({ id: repeated, source: 'webhook' }, [items[0]!]),
      worker!.recordPushed({ id: randomUUID(), source: 'webhook' }, [items[1]!]),
      worker!.recordPushed({ id: repeated, source: 'webhook' }, [items[2]!]),
    ]);
    expect(answers).toEqual([[items[0]], [items[1]], undefined]);
    await waitUntil(
      async () => (await stateOf(items[1]!.customerId)) === 'delivered',
      5_000,
      'delivered',
    );
    await waitUntil(
      async () => (await stateOf(items[0]!.customerId)) === 'delivered',
      5_000,
      'delivered',
    );
    expect(calls.flat()).toEqual([items[0]!.customerId, items[1]!.customerId]);
    // SQLite commits synchronously, so the group waits one turn of the event loop and takes all
    // three; PostgreSQL commits the first at once and groups what arrives during its commit.
    expect(calls).toHaveLength(database.dialect === 'sqlite' ? 1 : 2);
  });

  it('are left pending for the next instance once this one is stopping', async () => {
    worker!.start();
    await worker!.stop();
    const item = pushed(2);
    expect(await worker!.recordPushed({ id: randomUUID(), source: 'webhook' }, [item])).toEqual([
      item,
    ]);
    expect(await stateOf(item.customerId)).toBe('pending');
    expect(calls).toEqual([]);
    worker = undefined;
  });

  it('still in flight at the shutdown deadline are stopped and released, unattempted, for the next instance', async () => {
    hanging = true;
    worker!.start();
    const item = pushed(3);
    await worker!.recordPushed({ id: randomUUID(), source: 'webhook' }, [item]);
    await waitUntil(() => calls.length === 1, 5_000, 'the call in flight');
    await worker!.stop(200);
    worker = undefined;
    // Due at once, claimed by no one, and not counted as an attempt: nothing of the call is kept.
    const row = await rowOf(item.customerId);
    expect(row).toMatchObject({ state: 'pending', attempts: 0, locked_by: null, last_error: null });
    expect(row.next_attempt_at).toBeLessThanOrEqual(Date.now());
  });
});

describe('customers read from the feed', () => {
  const lease = { name: 'poll:crm', holder: 'instance-a' };
  /** Records `items` as one page of the feed, from the cursor where it is. */
  const recordPage = async (items: NewDelivery[]) => {
    const from = await store.leases.readCursor('crm');
    return worker!.recordFromFeed('crm', from, from + items.length, items, lease);
  };
  /** Customer ids the loop's own claims took (not written claimed as they were recorded). */
  const claimedByLoop: string[] = [];
  /** The loop's looks for due work that have answered. */
  let looks = 0;
  beforeEach(async () => {
    claimedByLoop.length = 0;
    looks = 0;
    const claimDue = store.claims.claimDue;
    store.claims.claimDue = async (...args) => {
      const rows = await claimDue(...args);
      claimedByLoop.push(...rows.map((row) => row.customer_id));
      looks += 1;
      return rows;
    };
    await store.leases.acquireLease(lease.name, lease.holder, 60_000);
  });

  it('as many as the free call slots carry are sent at once, claimed as they were recorded; the rest wait pending for the loop', async () => {
    worker!.start();
    await waitUntil(() => looks === 1, 5_000, "the loop's first look");
    // Two slots of 10: 20 go at once, in feed order; the last 5 are claimed by the loop.
    const items = Array.from({ length: 25 }, (_, n) => pushed(n));
    const ids = items.map((item) => item.customerId);
    expect(await recordPage(items)).toEqual(items);
    expect(calls).toEqual([ids.slice(0, 10), ids.slice(10, 20)]);
    await waitUntil(
      async () => (await store.readModels.countByState()).delivered === 25,
      5_000,
      'all 25 delivered',
    );
    expect(calls.slice(2).flat().sort()).toEqual(ids.slice(20).sort());
    expect(claimedByLoop.sort()).toEqual(ids.slice(20).sort());
    expect(calls.flat()).toHaveLength(25);
  });

  it('are written pending while this instance is stopping, and a reader waiting for room is let go by its signal', async () => {
    hanging = true;
    worker!.start();
    await recordPage(Array.from({ length: 20 }, (_, n) => pushed(n)));
    expect(calls).toHaveLength(2);
    // Both slots busy: a reader of 10 more waits until it gives up (its signal). On PostgreSQL,
    // where several instances share the feed's pages, it reads ahead instead: no wait.
    const reader = new AbortController();
    let waited = false;
    const waiting = worker!.waitForRoom(10, 60_000, reader.signal).then(() => (waited = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(waited).toBe(database.dialect === 'postgres');
    reader.abort();
    await waiting;

    await worker!.stop(100);
    const item = pushed(99);
    expect(await recordPage([item])).toEqual([item]);
    expect(await stateOf(item.customerId)).toBe('pending');
    expect(calls).toHaveLength(2);
    worker = undefined;
  });
});

describe('customers recorded while the circuit is open', () => {
  it('are written pending, due at once, without a claim given back, and a reader of the feed does not wait for room', async () => {
    // Written claimed, they would be handed over and given back untried (due after the reset).
    let settlements = 0;
    const settleClaims = store.claims.settleClaims;
    store.claims.settleClaims = (...args) => {
      settlements += 1;
      return settleClaims(...args);
    };
    // Not started: the loop's own looks (which claim and give back while the circuit is open)
    // stay out of it; only a hand-off as they are recorded could send them.
    circuit = 'open';
    const lease = { name: 'poll:crm', holder: 'instance-a' };
    await store.leases.acquireLease(lease.name, lease.holder, 60_000);
    const fromFeed = pushed(1);
    await worker!.recordFromFeed('crm', 0, 1, [fromFeed], lease);
    const fromPush = pushed(2);
    await worker!.recordPushed({ id: randomUUID(), source: 'webhook' }, [fromPush]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const item of [fromFeed, fromPush]) {
      const row = await rowOf(item.customerId);
      expect(row).toMatchObject({ state: 'pending', locked_by: null });
      expect(row.next_attempt_at).toBeLessThanOrEqual(Date.now());
    }
    expect(settlements).toBe(0);
    expect(calls).toEqual([]);

    // Both slots busy, then the circuit opens: a reader waits for nothing.
    circuit = 'closed';
    hanging = true;
    await worker!.recordFromFeed(
      'crm',
      1,
      21,
      Array.from({ length: 20 }, (_, n) => pushed(n + 10)),
      lease,
    );
    expect(calls).toHaveLength(2);
    circuit = 'open';
    const never = new AbortController().signal;
    const started = Date.now();
    await worker!.waitForRoom(10, 60_000, never);
    expect(Date.now() - started).toBeLessThan(30_000);
    await worker!.stop(100);
    worker = undefined;
  });
});

describe('a customer whose package Inventory holds at an older version', () => {
  it('is updated once a call found the package, even when that call used up the steps in a row', async () => {
    await worker!.stop();
    // Failures are retried, never dead-lettered within the test.
    worker = startWorker({
      maxAttempts: 20,
      deadLetterAfterMs: 3_600_000,
      baseMs: 1,
      maxDelayMs: 5,
    });
    const customerId = randomUUID();
    const packageId = randomUUID();
    // A create whose answer was lost made version 1's package; the customer is at version 3 now,
    // and four attempts have failed meanwhile.
    const operations: string[] = [];
    inventory = (change) => {
      operations.push(change.op);
      return {
        request: {
          id: packageId,
          status: 'pending',
          customer_version: change.op === 'update' ? change.version : 1,
        },
        created: false,
      };
    };
    const now = Date.now();
    await database.db
      .insertInto('deliveries')
      .values({
        customer_id: customerId,
        customer_name: 'Changed Name',
        customer_email: 'changed@example.com',
        customer_version: 3,
        customer_created_at: now - 60_000,
        changed_at: now - 1_000,
        event_id: randomUUID(),
        source: 'poll',
        state: 'retrying',
        attempts: 4,
        create_tried: 1,
        failing_since: now - 30_000,
        next_attempt_at: now,
        recorded_at: now - 60_000,
        updated_at: now,
      })
      .execute();
    worker.start();
    await waitUntil(
      async () => {
        worker!.wake();
        return (await stateOf(customerId)) === 'delivered';
      },
      5_000,
      'delivered',
    );
    // The create found the package (a step without a match, the fifth attempt: a failure); the
    // retry updated it, rather than asking for the create again.
    expect(operations).toEqual(['create', 'update']);
    expect(await rowOf(customerId)).toMatchObject({
      package_request_id: packageId,
      applied_version: 3,
      outcome: 'updated',
    });
  });
});
