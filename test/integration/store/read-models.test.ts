import { describe, expect, it } from 'vitest';
import { item, record, useSyncStore } from '../../support/sync-store.js';

const store = useSyncStore();
const admin = { who: 'admin', instance: 'test' };

describe('replays', () => {
  it('replays a dead letter once with a fresh attempt budget; a second replay does nothing', async () => {
    await record([item(1)], 0);
    const [row] = await store.claims.claimDue('a', 1, 1_000, 0);
    await store.claims.markFailed(
      row!,
      'a',
      { state: 'dead', error: 'bad', status: 422, nextAttemptAt: 0 },
      0,
    );
    expect(await store.readModels.replay(row!.customer_id, admin)).toBe(true);
    expect(await store.readModels.replay(row!.customer_id, admin)).toBe(false);
    const replayed = await store.readModels.get(row!.customer_id);
    expect(replayed).toMatchObject({ state: 'pending', attempts: 0, replays: 1 });
    expect(await store.readModels.replayAll(admin)).toBe(0);
  });
});
