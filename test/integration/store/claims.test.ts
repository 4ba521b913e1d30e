import { describe, expect, it } from 'vitest';
import { item, record, useSyncStore } from '../../support/sync-store.js';

const store = useSyncStore();

describe('claims', () => {
  it('gives each due delivery to one holder, and hands expired claims over', async () => {
    await record([1, 2, 3].map(item), 0);
    const a = await store.claims.claimDue('a', 2, 1_000, 10);
    const b = await store.claims.claimDue('b', 5, 1_000, 10);
    expect(a).toHaveLength(2);
    expect(b).toHaveLength(1);
    expect(new Set([...a, ...b].map((r) => r.customer_id)).size).toBe(3);
    expect(await store.claims.claimDue('c', 5, 1_000, 500)).toHaveLength(0);
    // a stalls past its claim; c takes its deliveries over, and a's late result is refused.
    const taken = await store.claims.claimDue('c', 5, 1_000, 1_011);
    expect(taken).toHaveLength(3);
    expect(await store.claims.markDelivered(a[0]!, 'a', 'pr-1')).toBe(false);
    expect(await store.claims.markDelivered(taken[0]!, 'c', 'pr-1')).toBe(true);
  });

  it('does not claim a delivery before it is due, nor a delivered or dead one', async () => {
    await record([1, 2].map(item), 0);
    const [first, second] = await store.claims.claimDue('a', 2, 1_000, 0);
    await store.claims.markFailed(
      first!,
      'a',
      { state: 'retrying', error: 'x', nextAttemptAt: 5_000 },
      0,
    );
    await store.claims.markFailed(
      second!,
      'a',
      { state: 'dead', error: 'y', status: 422, nextAttemptAt: 0 },
      0,
    );
    expect(await store.claims.claimDue('a', 5, 1_000, 4_999)).toHaveLength(0);
    const due = await store.claims.claimDue('a', 5, 1_000, 5_000);
    expect(due.map((r) => r.customer_id)).toEqual([first!.customer_id]);
    expect(due[0]!.attempts).toBe(1);
  });

  it('settles the same claimed rows twice at once, in opposite orders, without a deadlock', async () => {
    // One instance can hold a row in two settlements at once: its claim ran out during a slow
    // call and its next claim took the row again. Each settlement writes its deliveries first,
    // then its failures: without one lock order the two would lock the rows crosswise.
    for (let round = 0; round < 40; round += 1) {
      const ids = [1, 2, 3, 4].map((n) => item(round * 10 + n));
      await record(ids, 0);
      const rows = await store.claims.claimDue('a', 4, 1_000, 0);
      const failed = { state: 'retrying' as const, error: 'x', nextAttemptAt: 5_000 };
      const delivered = {
        state: 'delivered' as const,
        outcome: 'created' as const,
        operation: 'create' as const,
        packageRequestId: 'p',
      };
      const [first, second] = await Promise.all([
        store.claims.settleClaims('a', [
          { row: rows[0]!, outcome: delivered },
          { row: rows[1]!, outcome: delivered },
          { row: rows[2]!, outcome: failed },
          { row: rows[3]!, outcome: failed },
        ]),
        store.claims.settleClaims('a', [
          { row: rows[2]!, outcome: delivered },
          { row: rows[3]!, outcome: delivered },
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
    const [row] = await store.claims.claimDue('a', 1, 1_000, 0);
    expect(await store.claims.releaseClaim(row!, 'a', 2_000, 0)).toBe(true);
    expect(await store.readModels.get(row!.customer_id)).toMatchObject({
      state: 'pending',
      attempts: 0,
      next_attempt_at: 2_000,
    });
  });
});
