import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate } from '../../src/core/migrations.js';
import { integrationMigrations, type IntegrationTables } from '../../src/integration/migrations.js';
import { SyncStore, type NewDelivery } from '../../src/integration/store.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

let database: TestDatabase<IntegrationTables>;
let store: SyncStore;
beforeEach(async () => {
  database = await createTestDatabase<IntegrationTables>('integration');
  await migrate(database, integrationMigrations);
  store = new SyncStore(database);
});
afterEach(async () => {
  await database.drop();
});

/** Records pushed customers as a message of their own, as a webhook or RabbitMQ would. */
const record = (items: NewDelivery[], now?: number) =>
  store.recordMessage(randomUUID(), 'test', items, now);

const item = (n: number): NewDelivery => ({
  customerId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
  customerName: `C${n}`,
  customerCreatedAt: 0,
  eventId: `e${n}`,
  source: 'poll',
});

describe('leases', () => {
  it('lets one holder at a time have a lease, and another take it once it expires', async () => {
    expect(await store.acquireLease('poll', 'a', 1_000, 0)).toBe(true);
    expect(await store.acquireLease('poll', 'b', 1_000, 500)).toBe(false);
    expect(await store.acquireLease('poll', 'a', 1_000, 900)).toBe(true); // renewed to 1900
    expect(await store.acquireLease('poll', 'b', 1_000, 1_500)).toBe(false);
    expect(await store.acquireLease('poll', 'b', 1_000, 1_900)).toBe(true);
    expect(await store.leaseHolder('poll', 2_000)).toBe('b');
    await store.releaseLease('poll', 'a'); // not a's any more: no effect
    expect(await store.leaseHolder('poll', 2_000)).toBe('b');
    await store.releaseLease('poll', 'b');
    expect(await store.acquireLease('poll', 'a', 1_000, 2_000)).toBe(true);
  });
});

describe('recording', () => {
  it('records each customer once whichever message reports it, and each message once', async () => {
    expect((await record([item(1), item(2)]))!.map((i) => i.customerId)).toEqual([
      item(1).customerId,
      item(2).customerId,
    ]);
    expect(await record([item(2), item(3)])).toEqual([item(3)]);
    const id = randomUUID();
    expect(await store.recordMessage(id, 'test', [item(4)])).toEqual([item(4)]);
    expect(await store.recordMessage(id, 'test', [item(5)])).toBeUndefined();
    expect((await store.countByState()).pending).toBe(4);
  });

  it('records pushed customers already claimed for the instance that delivers them', async () => {
    const id = randomUUID();
    const claim = { holder: 'a', lockMs: 1_000 };
    const rows = await store.recordMessageClaimed(id, 'webhook', [item(1), item(2)], claim, 100);
    expect(
      rows!.map((row) => [row.customer_id, row.state, row.locked_by, row.locked_until]),
    ).toEqual([
      [item(1).customerId, 'delivering', 'a', 1_100],
      [item(2).customerId, 'delivering', 'a', 1_100],
    ]);
    // A redelivered message id, or a customer already recorded, adds nothing.
    expect(await store.recordMessageClaimed(id, 'webhook', [item(3)], claim, 200)).toBeUndefined();
    expect(
      await store.recordMessageClaimed(randomUUID(), 'webhook', [item(2)], claim, 200),
    ).toEqual([]);
    // Nobody else can claim them while the claim lasts; once it expires (a died), anyone can.
    expect(await store.claimDue('b', 10, 1_000, 1_000)).toEqual([]);
    const takenOver = await store.claimDue('b', 10, 1_000, 1_200);
    expect(takenOver.map((row) => row.locked_by)).toEqual(['b', 'b']);
    // a's late result is refused: b owns them now.
    expect(await store.markDelivered(rows![0]!, 'a', 'pr-1', 1_300)).toBe(false);
  });

  it('refuses a feed read recorded without the lease or from a stale cursor, writing nothing', async () => {
    const now = Date.now();
    const lease = { name: 'poll', holder: 'a' };
    expect(await store.recordFromFeed('crm', 0, 2, [item(1), item(2)], lease, now)).toBeUndefined();
    await store.acquireLease('poll', 'a', 60_000, now);
    expect(await store.recordFromFeed('crm', 0, 2, [item(1), item(2)], lease, now)).toHaveLength(2);
    expect(await store.readCursor('crm')).toBe(2);
    expect(await store.recordFromFeed('crm', 0, 3, [item(3)], lease, now)).toBeUndefined();
    expect(await store.readCursor('crm')).toBe(2);
    expect((await store.countByState()).pending).toBe(2);
  });
});

describe('claims', () => {
  it('gives each due delivery to one holder, and hands expired claims over', async () => {
    await record([1, 2, 3].map(item), 0);
    const a = await store.claimDue('a', 2, 1_000, 10);
    const b = await store.claimDue('b', 5, 1_000, 10);
    expect(a).toHaveLength(2);
    expect(b).toHaveLength(1);
    expect(new Set([...a, ...b].map((r) => r.customer_id)).size).toBe(3);
    expect(await store.claimDue('c', 5, 1_000, 500)).toHaveLength(0);
    // a stalls past its claim; c takes its deliveries over, and a's late result is refused.
    const taken = await store.claimDue('c', 5, 1_000, 1_011);
    expect(taken).toHaveLength(3);
    expect(await store.markDelivered(a[0]!, 'a', 'pr-1')).toBe(false);
    expect(await store.markDelivered(taken[0]!, 'c', 'pr-1')).toBe(true);
  });

  it('does not claim a delivery before it is due, nor a delivered or dead one', async () => {
    await record([1, 2].map(item), 0);
    const [first, second] = await store.claimDue('a', 2, 1_000, 0);
    await store.markFailed(first!, 'a', { state: 'retrying', error: 'x', nextAttemptAt: 5_000 }, 0);
    await store.markFailed(
      second!,
      'a',
      { state: 'dead', error: 'y', status: 422, nextAttemptAt: 0 },
      0,
    );
    expect(await store.claimDue('a', 5, 1_000, 4_999)).toHaveLength(0);
    const due = await store.claimDue('a', 5, 1_000, 5_000);
    expect(due.map((r) => r.customer_id)).toEqual([first!.customer_id]);
    expect(due[0]!.attempts).toBe(1);
  });

  it('replays a dead letter once with a fresh attempt budget; a second replay does nothing', async () => {
    await record([item(1)], 0);
    const [row] = await store.claimDue('a', 1, 1_000, 0);
    await store.markFailed(
      row!,
      'a',
      { state: 'dead', error: 'bad', status: 422, nextAttemptAt: 0 },
      0,
    );
    expect(await store.replay(row!.customer_id)).toBe(true);
    expect(await store.replay(row!.customer_id)).toBe(false);
    const replayed = await store.get(row!.customer_id);
    expect(replayed).toMatchObject({ state: 'pending', attempts: 0, replays: 1 });
    expect(await store.replayAll()).toBe(0);
  });

  it('settles the same claimed rows twice at once, in opposite orders, without a deadlock', async () => {
    // One instance can hold a row in two settlements at once: its claim ran out during a slow
    // call and its next claim took the row again. Each settlement writes its deliveries first,
    // then its failures: without one lock order the two would lock the rows crosswise.
    for (let round = 0; round < 40; round += 1) {
      const ids = [1, 2, 3, 4].map((n) => item(round * 10 + n));
      await record(ids, 0);
      const rows = await store.claimDue('a', 4, 1_000, 0);
      const failed = { state: 'retrying' as const, error: 'x', nextAttemptAt: 5_000 };
      const [first, second] = await Promise.all([
        store.settleClaims('a', [
          { row: rows[0]!, outcome: { state: 'delivered', packageRequestId: 'p' } },
          { row: rows[1]!, outcome: { state: 'delivered', packageRequestId: 'p' } },
          { row: rows[2]!, outcome: failed },
          { row: rows[3]!, outcome: failed },
        ]),
        store.settleClaims('a', [
          { row: rows[2]!, outcome: { state: 'delivered', packageRequestId: 'p' } },
          { row: rows[3]!, outcome: { state: 'delivered', packageRequestId: 'p' } },
          { row: rows[1]!, outcome: failed },
          { row: rows[0]!, outcome: failed },
        ]),
      ]);
      // Each row was settled exactly once, by one of the two.
      expect(first.map((written, i) => written !== second[[3, 2, 0, 1][i]!])).toEqual([
        true,
        true,
        true,
        true,
      ]);
    }
  });

  it('releases an untried claim without counting an attempt', async () => {
    await record([item(1)], 0);
    const [row] = await store.claimDue('a', 1, 1_000, 0);
    expect(await store.releaseClaim(row!, 'a', 2_000, 0)).toBe(true);
    expect(await store.get(row!.customer_id)).toMatchObject({
      state: 'pending',
      attempts: 0,
      next_attempt_at: 2_000,
    });
  });
});
