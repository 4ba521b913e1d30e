import { describe, expect, it } from 'vitest';
import { newAudit } from '../../../src/integration/audit/run-audit.js';
import { AUDIT_ABANDONED_AFTER_MS } from '../../../src/integration/store/audits.js';
import { item, useSyncStore } from '../../support/sync-store.js';

const store = useSyncStore();
const admin = { who: 'admin', instance: 'i-1' };

describe('audit jobs', () => {
  it('run one at a time across instances; one whose instance stopped writing is abandoned and another may start', async () => {
    const first = newAudit('a-1', false, 'i-1', 1_000);
    expect(await store.audits.begin(first, 1_000)).toBeUndefined();
    // Another instance asks while it runs: it is told which one runs, and starts nothing.
    const refused = await store.audits.begin(newAudit('a-2', false, 'i-2', 2_000), 2_000);
    expect(refused).toMatchObject({ id: 'a-1', state: 'running', instance: 'i-1' });
    expect(await store.audits.get('a-2')).toBeUndefined();

    // i-1 stops writing its progress: a minute later it is abandoned, and a new audit may start.
    const later = 1_000 + AUDIT_ABANDONED_AFTER_MS + 1;
    expect(await store.audits.get('a-1', later)).toMatchObject({ state: 'abandoned' });
    expect(await store.audits.begin(newAudit('a-3', true, 'i-2', later), later)).toBeUndefined();
    expect((await store.audits.list(10, later)).map((a) => [a.id, a.state])).toEqual([
      ['a-3', 'running'],
      ['a-1', 'abandoned'],
    ]);
  });

  it('resends a customer as a new change, leaving one an instance is delivering to it', async () => {
    await store.inbox.recordMessage({ id: 'm-1', source: 'webhook' }, [item(1), item(2)], 10);
    const [held] = await store.claims.claimDue('i-0', 1, 60_000, 20);
    const state = (id: string) => ({
      id,
      version: 1,
      deleted_at: null,
      changed_at: new Date(5).toISOString(),
      name: 'Jane Doe',
      email: 'jane@example.com',
    });
    const ids = [
      held!.customer_id,
      held!.customer_id === item(1).customerId ? item(2).customerId : item(1).customerId,
    ];
    const sent = await store.audits.resend(
      ids.map((id) => ({ state: state(id), packageRequestId: null, reason: 'resync' })),
      admin,
      30,
    );
    expect(sent).toBe(1);
    const standings = await store.audits.standings(ids);
    expect(standings.get(ids[0]!)?.state).toBe('delivering');
    expect(standings.get(ids[1]!)?.state).toBe('pending');
  });
});
