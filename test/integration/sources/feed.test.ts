import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { migrate } from '../../../src/core/migrations.js';
import { createLogger } from '../../../src/core/logging.js';
import type { DeliverableCustomer, FeedEvent } from '../../../src/contracts/customer-events.js';

/** A customer.created event as the feed client reads it. */
type CustomerCreatedEvent = FeedEvent & { data: DeliverableCustomer & { email: string } };
import type { CrmClient } from '../../../src/integration/crm-client.js';
import { createIntegrationMetrics } from '../../../src/integration/metrics.js';
import {
  integrationMigrations,
  type IntegrationTables,
} from '../../../src/integration/migrations.js';
import { FeedSource } from '../../../src/integration/sources/feed.js';
import { deliveryOfEvent, type NewDelivery } from '../../../src/integration/store/new-delivery.js';
import { createSyncStore } from '../../../src/integration/store/sync-store.js';
import { createTestDatabase, type TestDatabase } from '../../support/databases.js';
import { waitUntil } from '../../support/platform.js';
import type { Inbox } from '../../../src/integration/sources/source.js';

let database: TestDatabase<IntegrationTables> | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

const logger = createLogger({ service: 'test', level: 'silent' });

/** What the webhook receiver records of a pushed customer.created event. */
function pushedDelivery(event: CustomerCreatedEvent): NewDelivery {
  const delivery = deliveryOfEvent(event, 'webhook');
  if (!delivery?.ok) throw new Error('not a customer.created event');
  return delivery.value;
}

function event(position: number): CustomerCreatedEvent {
  const id = `00000000-0000-4000-8000-${String(position).padStart(12, '0')}`;
  return {
    position,
    id: `e-${position}`,
    type: 'customer.created',
    occurred_at: new Date(0).toISOString(),
    data: {
      id,
      name: `C${position}`,
      email: `c${position}@example.com`,
      created_at: new Date(0).toISOString(),
    },
  };
}

/** A CRM feed in memory whose reads can crash or let another poller run in the middle. */
class FakeFeed {
  readonly events: CustomerCreatedEvent[] = [];
  /** Runs during the next read, before it answers (simulates concurrency). */
  during: (() => Promise<void>) | undefined;
  crashNext = false;

  commit(count: number) {
    for (let i = 0; i < count; i += 1) this.events.push(event(this.events.length + 1));
  }

  /** A client that notes in `reads` where each read starts (its `after`). */
  clientNoting(reads: number[]): CrmClient {
    const client = this.client();
    return {
      readEvents: (after: number, limit: number) => {
        reads.push(after);
        return client.readEvents(after, limit, 0);
      },
    } as unknown as CrmClient;
  }

  client(): CrmClient {
    return {
      readEvents: async (after: number, limit: number) => {
        const page = this.events.filter((e) => e.position > after).slice(0, limit);
        const during = this.during;
        this.during = undefined;
        if (during) await during();
        if (this.crashNext) {
          this.crashNext = false;
          throw new Error('crashed after reading');
        }
        return page;
      },
    } as unknown as CrmClient;
  }
}

type Op =
  | { kind: 'commit'; count: number }
  | { kind: 'push'; pick: number }
  | { kind: 'poll'; who: 0 | 1; batch: number; crash: boolean; interleave: boolean }
  | { kind: 'expire_lease' };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('commit' as const), count: fc.integer({ min: 1, max: 5 }) }),
  fc.record({
    kind: fc.constant('poll' as const),
    who: fc.constantFrom(0 as const, 1 as const),
    batch: fc.integer({ min: 1, max: 4 }),
    crash: fc.boolean(),
    interleave: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('expire_lease' as const) }),
  fc.record({ kind: fc.constant('push' as const), pick: fc.nat() }),
);

describe('the feed cursor (model-based)', () => {
  it.each([
    ['following the feed (poll mode)', false],
    ['repairing beside push, passing over what push recorded', true],
  ])(
    '%s: is never ahead of what was recorded, and nothing at or before it is missing or doubled',
    async (_mode, beside) => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArbitrary, { minLength: 1, maxLength: 25 }), async (ops) => {
          database = await createTestDatabase<IntegrationTables>('integration');
          try {
            await migrate(database, integrationMigrations);
            const store = createSyncStore(database);
            const metrics = createIntegrationMetrics(
              new Registry(),
              store.readModels,
              store.controls,
            );
            const feed = new FakeFeed();
            const pollers = [0, 1].map(
              (i) =>
                new FeedSource({
                  leases: store.leases,
                  crm: feed.client(),
                  intervalMs: 1000,
                  batchSize: 4,
                  leaseMs: 60_000,
                  instanceId: `instance-${i}`,
                  logger,
                  metrics,
                  ...(beside ? { reconcile: true, passPushed: store.inbox.passPushed } : {}),
                }),
            );
            const pushed = new Set<number>();
            const poll = async (who: 0 | 1, batch: number) => {
              const poller = pollers[who]!;
              (poller as unknown as { options: { batchSize: number } }).options.batchSize = batch;
              await poller.pollOnce(store.inbox).catch(() => undefined); // a crash loses the read, nothing else
            };
            for (const op of ops) {
              if (op.kind === 'commit') feed.commit(op.count);
              else if (op.kind === 'push') {
                // A webhook or RabbitMQ message for one committed event, in any order, some never.
                const pushedEvent = feed.events[op.pick % Math.max(1, feed.events.length)];
                if (!beside || !pushedEvent) continue;
                await store.inbox.recordMessage(
                  { id: pushedEvent.id, source: 'webhook', feedPosition: pushedEvent.position },
                  [pushedDelivery(pushedEvent)],
                );
                pushed.add(pushedEvent.position);
              } else if (op.kind === 'expire_lease') {
                await database.db.updateTable('leases').set({ expires_at: 0 }).execute();
              } else {
                feed.crashNext = op.crash;
                if (op.interleave) {
                  // While this poller waits for its read, the lease lapses and the other one polls.
                  feed.during = async () => {
                    await database!.db.updateTable('leases').set({ expires_at: 0 }).execute();
                    await poll(op.who === 0 ? 1 : 0, 4);
                  };
                }
                await poll(op.who, op.batch);
                feed.during = undefined; // unused when this poller did not hold the lease
              }
              // The invariants, read from the database.
              const cursor = await store.leases.readCursor('crm');
              const recorded = await database.db
                .selectFrom('deliveries')
                .select('customer_id')
                .execute();
              const ids = recorded.map((r) => r.customer_id).sort();
              expect(cursor).toBeLessThanOrEqual(feed.events.length);
              const upToCursor = feed.events
                .filter((e) => e.position <= cursor)
                .map((e) => e.data.id)
                .sort();
              const pushedBeyond = feed.events
                .filter((e) => e.position > cursor && pushed.has(e.position))
                .map((e) => e.data.id);
              expect(ids).toEqual([...upToCursor, ...pushedBeyond].sort());
            }
            // With time and a working feed, everything gets recorded.
            feed.crashNext = false;
            for (let i = 0; i < feed.events.length + 1; i += 1) {
              await database.db.updateTable('leases').set({ expires_at: 0 }).execute();
              await poll(0, 4);
            }
            expect(await store.leases.readCursor('crm')).toBe(feed.events.length);
          } finally {
            await database.drop();
            database = undefined;
          }
        }),
        { numRuns: 40 },
      );
    },
    120_000,
  );
});

describe('the feed repair beside push', () => {
  it('reads the feed only after what push recorded without a gap, and records the gap from it', async () => {
    database = await createTestDatabase<IntegrationTables>('integration');
    await migrate(database, integrationMigrations);
    const store = createSyncStore(database);
    const feed = new FakeFeed();
    feed.commit(10);
    const reads: number[] = [];
    const repair = new FeedSource({
      leases: store.leases,
      crm: feed.clientNoting(reads),
      intervalMs: 1000,
      batchSize: 100,
      leaseMs: 60_000,
      instanceId: 'a',
      logger,
      metrics: createIntegrationMetrics(new Registry(), store.readModels, store.controls),
      reconcile: true,
      passPushed: store.inbox.passPushed,
    });
    // Push delivered every event but the fifth.
    for (const pushed of feed.events.filter((e) => e.position !== 5)) {
      await store.inbox.recordMessage(
        { id: pushed.id, source: 'webhook', feedPosition: pushed.position },
        [pushedDelivery(pushed)],
      );
    }
    await repair.pollOnce(store.inbox);
    expect(reads).toEqual([4]);
    const repaired = await database.db
      .selectFrom('deliveries')
      .select(['customer_id', 'source'])
      .where('source', '=', 'reconcile')
      .execute();
    expect(repaired.map((row) => row.customer_id)).toEqual([feed.events[4]!.data.id]);
    expect(await store.leases.readCursor('crm')).toBe(10);
    // Caught up: the next round reads after the last event, not from the start.
    await repair.pollOnce(store.inbox);
    expect(reads).toEqual([4, 10]);
  });
});

describe('the poller', () => {
  it('behind the feed, reads its next page once the deliveries have room to send it, waiting at most 250 ms, and stops waiting when stopped', async () => {
    database = await createTestDatabase<IntegrationTables>('integration');
    await migrate(database, integrationMigrations);
    const store = createSyncStore(database);
    const feed = new FakeFeed();
    feed.commit(250);
    const reads: number[] = [];
    const waits: [customers: number, maxWaitMs: number][] = [];
    let letGo: (() => void) | undefined;
    const inbox: Inbox = {
      recordPushed: () => Promise.reject(new Error('the poller records no pushed message')),
      recordFromFeed: store.inbox.recordFromFeed,
      // No room until the test lets the poller go.
      waitForRoom: (customers, maxWaitMs, signal) => {
        waits.push([customers, maxWaitMs]);
        return new Promise((resolve) => {
          letGo = resolve;
          signal.addEventListener('abort', () => resolve());
        });
      },
    };
    const poller = new FeedSource({
      leases: store.leases,
      crm: feed.clientNoting(reads),
      intervalMs: 5_000,
      batchSize: 100,
      leaseMs: 60_000,
      instanceId: 'a',
      logger,
      metrics: createIntegrationMetrics(new Registry(), store.readModels, store.controls),
    });
    poller.start(inbox);
    try {
      // The first read goes at once; a full page means more wait, so the next waits for room.
      await waitUntil(() => waits.length === 1, 5_000, 'the poller waiting for room');
      // A page of 100, waited for at most 250 ms (then read anyway, written pending).
      expect(waits).toEqual([[100, 250]]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(reads).toEqual([0]);
      letGo!();
      await waitUntil(() => waits.length === 2, 5_000, 'the second page read');
      expect(reads).toEqual([0, 100]);
    } finally {
      await poller.stop();
    }
    // Stopped while waiting: the third page was not read.
    expect(reads).toEqual([0, 100]);
    expect(await store.leases.readCursor('crm')).toBe(200);
  });
});
