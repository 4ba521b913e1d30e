import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { NewDelivery } from '../../../src/integration/store/new-delivery.js';
import { item, record, useSyncStore } from '../../support/sync-store.js';

const store = useSyncStore();

describe('recording', () => {
  it('records each customer once whichever message reports it, and each message once', async () => {
    expect((await record([item(1), item(2)]))!.map((i) => i.customerId)).toEqual([
      item(1).customerId,
      item(2).customerId,
    ]);
    expect(await record([item(2), item(3)])).toEqual([item(3)]);
    const id = randomUUID();
    expect(await store.inbox.recordMessage({ id, source: 'test' }, [item(4)])).toEqual([item(4)]);
    expect(await store.inbox.recordMessage({ id, source: 'test' }, [item(5)])).toBeUndefined();
    expect((await store.readModels.countByState()).pending).toBe(4);
  });

  it('records pushed customers already claimed for the instance that delivers them', async () => {
    const id = randomUUID();
    const claim = { holder: 'a', lockMs: 1_000 };
    const rows = await store.inbox.recordMessageClaimed(
      { id, source: 'webhook' },
      [item(1), item(2)],
      claim,
      100,
    );
    expect(
      rows!.map((row) => [row.customer_id, row.state, row.locked_by, row.locked_until]),
    ).toEqual([
      [item(1).customerId, 'delivering', 'a', 1_100],
      [item(2).customerId, 'delivering', 'a', 1_100],
    ]);
    // A redelivered message id, or a customer already recorded, adds nothing.
    expect(
      await store.inbox.recordMessageClaimed({ id, source: 'webhook' }, [item(3)], claim, 200),
    ).toBeUndefined();
    expect(
      await store.inbox.recordMessageClaimed(
        { id: randomUUID(), source: 'webhook' },
        [item(2)],
        claim,
        200,
      ),
    ).toEqual([]);
    // Nobody else can claim them while the claim lasts; once it expires (a died), anyone can.
    expect(await store.claims.claimDue('b', 10, 1_000, 1_000)).toEqual([]);
    const takenOver = await store.claims.claimDue('b', 10, 1_000, 1_200);
    expect(takenOver.map((row) => row.locked_by)).toEqual(['b', 'b']);
    // a's late result is refused: b owns them now.
    expect(await store.claims.markDelivered(rows![0]!, 'a', 'pr-1', 1_300)).toBe(false);
  });

  it('records messages pushed together as each alone would be: a repeated id is a duplicate, and of one customer only the newest state is taken', async () => {
    const renamed: NewDelivery = {
      ...item(1),
      customerVersion: 2,
      customerName: 'C1 renamed',
      eventType: 'customer.updated',
      eventId: 'e1-v2',
    };
    await store.inbox.recordMessage({ id: 'm-0', source: 'webhook' }, [item(9)], 50);
    const seen = (await store.readModels.countByState()).pending;
    const claim = { holder: 'a', lockMs: 1_000 };
    const { accepted, rows } = await store.inbox.recordPushedItems(
      [
        { message: { id: 'm-1', source: 'webhook' }, items: [renamed] },
        { message: { id: 'm-2', source: 'webhook' }, items: [item(1), item(2)] },
        { message: { id: 'm-1', source: 'webhook' }, items: [item(3)] },
        { message: { id: 'm-3', source: 'webhook' }, items: [item(9)] },
      ],
      claim,
      100,
    );
    expect(accepted).toEqual([[renamed], [item(2)], undefined, []]);
    expect(rows.map((row) => [row.customer_id, row.customer_version, row.state])).toEqual([
      [item(1).customerId, 2, 'delivering'],
      [item(2).customerId, 1, 'delivering'],
    ]);
    expect((await store.readModels.countByState()).pending).toBe(seen);
    const results = async (n: number) =>
      (await store.timeline.read(item(n).customerId, 0, 10)).map(
        (entry) => `${entry.message_id ?? '-'} v${Number(entry.version)} ${entry.result}`,
      );
    expect(await results(1)).toEqual(['m-1 v2 taken', 'm-2 v1 stale']);
    expect(await results(3)).toEqual(['m-1 v1 duplicate']);
    expect(await results(9)).toEqual(['m-0 v1 taken', 'm-3 v1 stale']);
  });

  it('refuses a feed read recorded without the lease or from a stale cursor, writing nothing', async () => {
    const now = Date.now();
    const lease = { name: 'poll', holder: 'a' };
    expect(
      await store.inbox.recordFromFeed('crm', 0, 2, [item(1), item(2)], lease, now),
    ).toBeUndefined();
    await store.leases.acquireLease('poll', 'a', 60_000, now);
    expect(
      await store.inbox.recordFromFeed('crm', 0, 2, [item(1), item(2)], lease, now),
    ).toHaveLength(2);
    expect(await store.leases.readCursor('crm')).toBe(2);
    expect(await store.inbox.recordFromFeed('crm', 0, 3, [item(3)], lease, now)).toBeUndefined();
    expect(await store.leases.readCursor('crm')).toBe(2);
    expect((await store.readModels.countByState()).pending).toBe(2);
  });

  it('writes a feed page claimed for its first customers up to the limit, the rest and any known customer pending, and nothing claimed while paused', async () => {
    const lease = { name: 'poll', holder: 'a' };
    await store.leases.acquireLease('poll', 'a', 60_000, 100);
    await store.inbox.recordMessage({ id: randomUUID(), source: 'webhook' }, [item(1)], 100);
    // The limit counts the page's customers, new or known: 3 of them may be claimed.
    const claim = { holder: 'a', lockMs: 1_000, limit: 3 };
    const page = (from: number, to: number, items: NewDelivery[]) => ({
      source: 'crm',
      from,
      to,
      items,
      lease,
    });
    // Customer 1 is known: its newer state is not a new delivery and takes no claim.
    const newer = { ...item(1), customerVersion: 2 };
    const recorded = await store.inbox.recordFeedPage(
      page(0, 4, [newer, item(2), item(3), item(4)]),
      claim,
      200,
    );
    expect(recorded!.accepted).toEqual([newer, item(2), item(3), item(4)]);
    expect(recorded!.claimed.map((row) => [row.customer_id, row.locked_until])).toEqual([
      [item(2).customerId, 1_200],
      [item(3).customerId, 1_200],
    ]);
    const states = await Promise.all(
      [1, 2, 3, 4].map(async (n) => {
        const row = (await store.readModels.get(item(n).customerId))!;
        return [row.state, row.locked_by, Number(row.create_tried), Number(row.revision)];
      }),
    );
    expect(states).toEqual([
      ['pending', null, 0, 1],
      ['delivering', 'a', 1, 0],
      ['delivering', 'a', 1, 0],
      ['pending', null, 0, 0],
    ]);
    expect(await store.leases.readCursor('crm')).toBe(4);

    await store.controls.pause({ who: 'admin', instance: 'a' }, 300);
    const paused = await store.inbox.recordFeedPage(page(4, 5, [item(5)]), claim, 300);
    expect(paused).toEqual({ accepted: [item(5)], claimed: [] });
    expect(await store.readModels.countByState()).toMatchObject({ pending: 3, delivering: 2 });
    // From a stale cursor nothing is written, claimed or not.
    expect(await store.inbox.recordFeedPage(page(4, 6, [item(6)]), claim, 400)).toBeUndefined();
  });

  it('moves the cursor over the positions push recorded, up to the first gap, and only with the lease', async () => {
    const now = Date.now();
    const lease = { name: 'poll', holder: 'a' };
    const push = (position: number) =>
      store.inbox.recordMessage(
        { id: randomUUID(), source: 'webhook', feedPosition: position },
        [item(position)],
        now,
      );
    for (const position of [1, 2, 3, 5, 6]) await push(position);
    await store.inbox.recordMessage({ id: randomUUID(), source: 'webhook' }, [item(9)], now);
    expect(await store.inbox.passPushed('crm', lease, 100, now)).toBeUndefined();
    expect(await store.leases.readCursor('crm')).toBe(0);

    await store.leases.acquireLease('poll', 'a', 60_000, now);
    // 4 is missing: the cursor stops at 3, however many follow the gap.
    expect(await store.inbox.passPushed('crm', lease, 100, now)).toBe(3);
    expect(await store.leases.readCursor('crm')).toBe(3);
    // The feed repair records 4; push's 5 and 6 then follow on without another read.
    await store.inbox.recordFromFeed('crm', 3, 4, [item(4)], lease, now);
    expect(await store.inbox.passPushed('crm', lease, 1, now)).toBe(5);
    expect(await store.inbox.passPushed('crm', lease, 100, now)).toBe(6);
    expect(await store.inbox.passPushed('crm', lease, 100, now)).toBe(6);
  });
});

describe('customer states', () => {
  const version = (n: number, customerVersion: number, changes: Partial<NewDelivery> = {}) => ({
    ...item(n),
    customerVersion,
    eventType: 'customer.updated' as const,
    customerName: `C${n} v${customerVersion}`,
    ...changes,
  });
  const deletion = (n: number, customerVersion: number) =>
    version(n, customerVersion, {
      eventType: 'customer.deleted',
      customerName: '',
      customerEmail: null,
      deletedAt: 5_000,
    });
  const rowOf = (n: number) => store.readModels.get(item(n).customerId);

  it('takes a newer state, ignores an older or equal one, and erases name and email on deletion', async () => {
    await record([item(1)]);
    // Newer: taken. Equal or older, reordered or duplicated: nothing changes.
    expect(await record([version(1, 3)])).toEqual([version(1, 3)]);
    expect(await record([version(1, 2)])).toEqual([]);
    expect(await record([version(1, 3, { customerName: 'Other' })])).toEqual([]);
    expect(await rowOf(1)).toMatchObject({ customer_name: 'C1 v3', customer_version: 3 });
    // Several states of one customer in one read of the feed: the newest wins, written once.
    expect(await record([version(2, 2), version(2, 4), version(2, 3)])).toEqual([version(2, 4)]);
    expect(await rowOf(2)).toMatchObject({ customer_version: 4, revision: 0 });
    // A deletion is the newest state there is: it blanks the personal data.
    expect(await record([deletion(1, 4)])).toEqual([deletion(1, 4)]);
    expect(await rowOf(1)).toMatchObject({
      customer_name: '',
      customer_email: null,
      customer_deleted_at: 5_000,
      customer_version: 4,
      revision: 2,
    });
    expect(await record([version(1, 3)])).toEqual([]);
    // A deletion seen first records the customer as deleted, with nothing personal.
    expect(await record([deletion(3, 2)])).toEqual([deletion(3, 2)]);
    expect(await rowOf(3)).toMatchObject({ customer_name: '', customer_deleted_at: 5_000 });
  });

  it('puts a delivered customer back in line for a newer state, with a fresh attempt budget', async () => {
    await record([item(1)], 0);
    const [claimed] = await store.claims.claimDue('a', 1, 1_000, 0);
    expect(claimed!.create_tried).toBe(1);
    await store.claims.markDelivered(claimed!, 'a', 'pr-1', 10);
    await record([version(1, 2)], 20);
    expect(await rowOf(1)).toMatchObject({
      state: 'pending',
      attempts: 0,
      package_request_id: 'pr-1',
      applied_version: 1,
      outcome: 'created',
    });
  });

  it('settles an attempt at an older state as pending when a newer one arrived during the call, keeping what it found', async () => {
    await record([item(1)], 0);
    const [claimed] = await store.claims.claimDue('a', 1, 1_000, 0);
    // The change arrives while the create is in flight: the claim stays with its holder.
    await record([version(1, 2)], 10);
    expect(await rowOf(1)).toMatchObject({ state: 'delivering', locked_by: 'a', revision: 1 });
    expect(await store.claims.markDelivered(claimed!, 'a', 'pr-1', 20)).toBe(true);
    expect(await rowOf(1)).toMatchObject({
      state: 'pending',
      locked_by: null,
      package_request_id: 'pr-1',
      applied_version: 1,
      next_attempt_at: 20,
    });
    // The next claim is for the update.
    const [next] = await store.claims.claimDue('a', 1, 1_000, 30);
    expect(next).toMatchObject({ customer_version: 2, package_request_id: 'pr-1', revision: 1 });
  });
});
