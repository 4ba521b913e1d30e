import { describe, expect, it } from 'vitest';
import { useSyncStore } from '../../support/sync-store.js';

const store = useSyncStore();

describe('leases', () => {
  it('lets one holder at a time have a lease, and another take it once it expires', async () => {
    expect(await store.leases.acquireLease('poll', 'a', 1_000, 0)).toBe(true);
    expect(await store.leases.acquireLease('poll', 'b', 1_000, 500)).toBe(false);
    expect(await store.leases.acquireLease('poll', 'a', 1_000, 900)).toBe(true); // renewed to 1900
    expect(await store.leases.acquireLease('poll', 'b', 1_000, 1_500)).toBe(false);
    expect(await store.leases.acquireLease('poll', 'b', 1_000, 1_900)).toBe(true);
    expect(await store.leases.leaseHolder('poll', 2_000)).toBe('b');
    await store.leases.releaseLease('poll', 'a'); // not a's any more: no effect
    expect(await store.leases.leaseHolder('poll', 2_000)).toBe('b');
    await store.leases.releaseLease('poll', 'b');
    expect(await store.leases.acquireLease('poll', 'a', 1_000, 2_000)).toBe(true);
  });
});
