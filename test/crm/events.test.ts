import type { Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate } from '../../src/core/migrations.js';
import { crmMigrations, type CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { crmFeed, type FeedEvent } from '../support/crm-feed.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

let t: TestApp<CrmTables>;
beforeEach(async () => {
  t = await createTestApp(crmService);
});
afterEach(async () => {
  await t.close();
});

const { createCustomer, readFeed } = crmFeed(() => t);

describe('GET /events (the change feed)', () => {
  it('has one customer.created event per customer, in creation order, with the customer', async () => {
    const customers = [];
    for (let i = 0; i < 5; i += 1) customers.push(await createCustomer(i));
    const { events, link } = await readFeed('after=0');
    expect(link).toBeUndefined();
    expect(events.map((e) => e.data)).toEqual(customers);
    expect(events.every((e) => e.type === 'customer.created')).toBe(true);
    expect(new Set(events.map((e) => e.id)).size).toBe(5);
    const positions = events.map((e) => e.position);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect((await readFeed(`after=${positions.at(-1)}`)).events).toEqual([]);
  });

  it('pages with limit and a Link to the next position', async () => {
    for (let i = 0; i < 5; i += 1) await createCustomer(i);
    const first = await readFeed('limit=2');
    expect(first.events).toHaveLength(2);
    expect(first.link).toBe(`</events?limit=2&after=${first.events[1]!.position}>; rel="next"`);
  });

  it('does not record an event for a refused customer', async () => {
    await createCustomer(1);
    await t.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'Again', email: 'C1@example.com' }),
    });
    expect((await readFeed('after=0')).events).toHaveLength(1);
  });

  it('long-polls: an empty read waits and answers as soon as a customer is created', async () => {
    const started = Date.now();
    const pending = readFeed('after=0&wait=10000');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const customer = await createCustomer(1);
    const { events } = await pending;
    expect(events.map((e) => e.data.id)).toEqual([customer.id]);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('long-polls: answers an empty page when the wait ends with nothing new', async () => {
    const started = Date.now();
    expect((await readFeed('after=0&wait=300')).events).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('ends waiting long-polls at once when the service stops', async () => {
    const pending = readFeed('after=0&wait=30000');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await t.runtime.stop?.();
    expect((await pending).events).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it.each([
    ['after=-1'],
    ['after=x'],
    ['limit=0'],
    ['limit=1001'],
    ['wait=30001'],
    ['wait=-5'],
    ['x=1'],
  ])('rejects %s with 400', async (query) => {
    expectProblem(await t.app.inject({ method: 'GET', url: `/events?${query}` }), 400);
  });

  it('never skips a committed customer while many are created concurrently and a reader follows', async () => {
    const total = 200;
    const seen: FeedEvent[] = [];
    let cursor = 0;
    let creating = true;
    const reader = (async () => {
      // Read as fast as possible while writers commit, so any out-of-order commit would be seen.
      while (creating || seen.length < total) {
        // An empty read ends the loop only if it began after the last create had committed.
        const writersDone = !creating;
        const { events } = await readFeed(`after=${cursor}&limit=50`);
        for (const event of events) {
          expect(event.position).toBeGreaterThan(cursor);
          cursor = event.position;
          seen.push(event);
        }
        if (writersDone && events.length === 0) break;
        // Let the writers' requests run (SQLite answers without touching the event loop).
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const writers = Array.from({ length: 10 }, async (_, w) => {
      for (let i = w; i < total; i += 10) await createCustomer(i);
    });
    await Promise.all(writers);
    creating = false;
    await reader;
    const ids = seen.map((e) => e.data.id);
    expect(new Set(ids).size).toBe(total);
    expect(ids).toHaveLength(total);
  });
});

describe('migration 2', () => {
  let database: TestDatabase<CrmTables> | undefined;
  afterEach(async () => {
    await database?.drop();
    database = undefined;
  });

  it('records an event for every customer created before the outbox existed, in order', async () => {
    database = await createTestDatabase<CrmTables>('crm');
    await migrate(database, crmMigrations.slice(0, 1));
    const db = database.db as Kysely<CrmTables>;
    const ids: string[] = [];
    for (let i = 0; i < 1203; i += 1) {
      const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
      ids.push(id);
    }
    for (let i = 0; i < ids.length; i += 500) {
      await db
        .insertInto('customers')
        .values(
          ids.slice(i, i + 500).map((id, j) => ({
            id,
            name: `Old ${i + j}`,
            email: `old${i + j}@example.com`,
            email_normalized: `old${i + j}@example.com`,
            created_at: new Date(Date.UTC(2025, 0, 1, 0, 0, i + j)).toISOString(),
          })),
        )
        .execute();
    }
    await migrate(database, crmMigrations);
    const events = await db
      .selectFrom('events')
      .select(['customer_id', 'payload'])
      .orderBy('position')
      .execute();
    expect(events.map((e) => e.customer_id)).toEqual(ids);
    expect(JSON.parse(events[0]!.payload)).toEqual({
      id: ids[0],
      name: 'Old 0',
      email: 'old0@example.com',
      created_at: '2025-01-01T00:00:00.000Z',
    });
  });
});
