import { describe, expect, it } from 'vitest';
import { item, useSyncStore } from '../../support/sync-store.js';

const store = useSyncStore();
const admin = { who: 'admin', instance: 'i-1' };

describe('pausing delivery', () => {
  it('claims nothing while paused, records pushed customers pending, and notes it in every timeline', async () => {
    await store.inbox.recordMessage({ id: 'm-1', source: 'webhook' }, [item(1)], 10);
    expect(await store.controls.pause(admin, 20)).toBe(true);
    expect(await store.controls.pause(admin, 21)).toBe(false);
    expect(await store.controls.read()).toEqual({ paused: true, since: 20, by: 'admin' });

    // Nothing is claimed, not even a claim that expired; a push is recorded but not claimed.
    expect(await store.claims.claimDue('i-1', 10, 1_000, 30)).toEqual([]);
    const pushed = await store.inbox.recordMessageClaimed(
      { id: 'm-2', source: 'webhook' },
      [item(2)],
      { holder: 'i-1', lockMs: 1_000 },
      40,
    );
    expect(pushed!.map((row) => [row.state, row.locked_by])).toEqual([['pending', null]]);
    expect((await store.readModels.countByState()).pending).toBe(2);

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
    expect(await steps(2)).toEqual(['event:taken', 'resume by admin']);
  });
});
