import { describe, expect, it } from 'vitest';
import { item, useSyncStore } from '../../support/sync-store.js';

const store = useSyncStore();
const admin = { who: 'admin', instance: 'i-1' };

describe('pausing delivery', () => {
  it('claims nothing while paused, records pushed customers pending, and notes it in every timeline', async () => {
    await store.inbox.recordMessage({ id: 'm-1', source: 'webhook' }, [item(1)], 10);
    // An instance claims it, and dies: its claim runs out at 15.
    expect(await store.claims.claimDue('i-0', 10, 5, 10)).toHaveLength(1);
    // Of two pauses at once, one pauses.
    const pauses = await Promise.all([
      store.controls.pause(admin, 20),
      store.controls.pause(admin, 20),
    ]);
    expect(pauses.sort()).toEqual([false, true]);
    expect(await store.controls.read()).toEqual({ paused: true, since: 20, by: 'admin' });

    // Nothing is claimed, not even the expired claim; a push is recorded but not claimed.
    expect(await store.claims.claimDue('i-1', 10, 1_000, 30)).toEqual([]);
    const pushed = await store.inbox.recordMessageClaimed(
      { id: 'm-2', source: 'webhook' },
      [item(2)],
      { holder: 'i-1', lockMs: 1_000 },
      40,
    );
    expect(pushed!.map((row) => [row.state, row.locked_by])).toEqual([['pending', null]]);
    expect(await store.readModels.countByState()).toMatchObject({ pending: 1, delivering: 1 });

    expect(await store.controls.resume(admin, 50)).toBe(true);
    expect(await store.controls.resume(admin, 51)).toBe(false);
    expect(await store.controls.read()).toEqual({ paused: false, since: null, by: null });
    const claimed = await store.claims.claimDue('i-1', 10, 1_000, 60);
    expect(claimed.map((row) => row.customer_id).sort()).toEqual(
      [item(1).customerId, item(2).customerId].sort(),
    );

    // Each customer's timeline shows the pause and resume from its first entry on.
    const steps = async (n: number) =>
      (await store.timeline.read(item(n).customerId, 0, 100)).map((row) =>
        row.kind === 'action' ? `${row.action} by ${row.source}` : `${row.kind}:${row.result}`,
      );
    expect(await steps(1)).toEqual(['event:taken', 'pause by admin', 'resume by admin']);
    // The pause in force when customer 2 arrived explains why nothing was sent: it is shown.
    expect(await steps(2)).toEqual(['pause by admin', 'event:taken', 'resume by admin']);
  });

  it('does not count the time paused towards a dead letter', async () => {
    await store.inbox.recordMessage({ id: 'm-1', source: 'webhook' }, [item(1)], 0);
    const [row] = await store.claims.claimDue('i-1', 1, 1_000, 0);
    await store.claims.markFailed(
      row!,
      'i-1',
      { state: 'retrying', error: 'down', status: 503, nextAttemptAt: 100 },
      50,
    );
    await store.controls.pause(admin, 1_000);
    await store.controls.resume(admin, 61_000);
    // Failing since 50, paused for 60 s: failing for 50 ms of running time, as if since 60,050.
    expect((await store.readModels.get(item(1).customerId))!.failing_since).toBe(60_050);
  });
});
