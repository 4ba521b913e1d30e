import { describe, expect, it } from 'vitest';
import { item, useSyncStore } from '../../support/sync-store.js';

const store = useSyncStore();
const admin = { who: 'admin', instance: 'i-1' };

/** The timeline as (kind, result, detail) triples, the detail depending on the kind. */
async function timelineOf(customerId: string) {
  const rows = await store.timeline.read(customerId, 0, 100);
  return rows.map((row) => [
    row.kind,
    row.result,
    row.kind === 'event'
      ? `${row.source} ${row.event_type} v${Number(row.version)} ${row.message_id ?? '-'}`
      : row.kind === 'attempt'
        ? `${row.operation ?? '-'} v${Number(row.version)} ${row.outcome ?? row.error} ${row.duration_ms}ms ${row.trace_id ?? '-'} ${row.instance}`
        : `${row.action} by ${row.source} on ${row.instance}`,
  ]);
}

describe('a customer’s timeline', () => {
  it('records every event received, taken, stale or redelivered, every attempt, and replays, in order', async () => {
    const created = item(1);
    const updated = {
      ...created,
      customerVersion: 2,
      customerName: 'C1 renamed',
      eventType: 'customer.updated' as const,
      eventId: 'e1-v2',
      source: 'webhook',
    };
    const claim = { holder: 'i-1', lockMs: 1_000 };
    const [row] = (await store.inbox.recordMessageClaimed(
      { id: 'msg-1', source: 'webhook' },
      [{ ...created, source: 'webhook' }],
      claim,
      100,
    ))!;
    // Redelivered, then read from the feed: neither is news.
    await store.inbox.recordMessageClaimed(
      { id: 'msg-1', source: 'webhook' },
      [created],
      claim,
      110,
    );
    const lease = { name: 'poll', holder: 'i-1' };
    await store.leases.acquireLease(lease.name, lease.holder, 10_000, 120);
    await store.inbox.recordFromFeed('crm', 0, 1, [created], lease, 120);
    // The create fails for good, is replayed, and meets the newer state arriving during the call.
    await store.claims.settleClaims(
      'i-1',
      [
        {
          row: row!,
          outcome: {
            state: 'dead',
            operation: 'create',
            error: 'refused',
            status: 422,
            nextAttemptAt: 0,
          },
          attempt: { startedAt: 130, traceId: 'trace-a' },
        },
      ],
      150,
    );
    expect(await store.readModels.replay(created.customerId, admin, 200)).toBe(true);
    const [again] = await store.claims.claimDue('i-1', 1, 1_000, 210);
    await store.inbox.recordMessage({ id: 'msg-2', source: 'webhook' }, [updated], 220);
    await store.claims.settleClaims(
      'i-1',
      [
        {
          row: again!,
          outcome: {
            state: 'delivered',
            outcome: 'created',
            operation: 'create',
            packageRequestId: 'pr-1',
            appliedVersion: 1,
          },
          attempt: { startedAt: 210, traceId: 'trace-b' },
        },
      ],
      230,
    );
    // Another instance's claim on it expired: its result comes too late.
    const [next] = await store.claims.claimDue('i-1', 1, 1_000, 240);
    await store.claims.claimDue('i-2', 1, 1_000, 2_000);
    await store.claims.settleClaims(
      'i-1',
      [
        {
          row: next!,
          outcome: {
            state: 'delivered',
            outcome: 'updated',
            operation: 'update',
            appliedVersion: 2,
          },
          attempt: { startedAt: 240, traceId: 'trace-c' },
        },
      ],
      2_100,
    );

    expect(await timelineOf(created.customerId)).toEqual([
      ['event', 'taken', 'webhook customer.created v1 msg-1'],
      ['event', 'duplicate', 'poll customer.created v1 msg-1'],
      ['event', 'stale', 'poll customer.created v1 -'],
      ['attempt', 'dead', 'create v1 refused 20ms trace-a i-1'],
      ['action', 'done', 'replay by admin on i-1'],
      ['event', 'taken', 'webhook customer.updated v2 msg-2'],
      ['attempt', 'superseded', 'create v1 created 20ms trace-b i-1'],
      ['attempt', 'late', 'update v2 updated 1860ms trace-c i-1'],
    ]);
    // Nothing of another customer, and reading on from a seq.
    expect(await store.timeline.read(item(2).customerId, 0, 10)).toEqual([]);
    const all = await store.timeline.read(created.customerId, 0, 100);
    expect((await store.timeline.read(created.customerId, all[5]!.seq, 100)).length).toBe(2);
  });

  it('keeps the timeline of each replayed dead letter when all are replayed at once', async () => {
    for (const n of [1, 2]) {
      await store.inbox.recordMessage({ id: `m${n}`, source: 'webhook' }, [item(n)], 0);
    }
    for (const row of await store.claims.claimDue('i-1', 2, 1_000, 0)) {
      await store.claims.markFailed(
        row,
        'i-1',
        { state: 'dead', error: 'no', nextAttemptAt: 0 },
        5,
      );
    }
    expect(await store.readModels.replayAll(admin, {}, 10)).toBe(2);
    for (const n of [1, 2]) {
      expect(
        (await timelineOf(item(n).customerId)).map(([kind, result]) => `${kind}:${result}`),
      ).toEqual(['event:taken', 'attempt:dead', 'action:done']);
    }
  });
});
