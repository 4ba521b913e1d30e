import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Customer } from '../../src/contracts/customers.js';
import { EventLog } from '../../src/crm/events.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import { createTestApp, type TestApp } from '../support/apps.js';
import { crmFeed } from '../support/crm-feed.js';
import { postgresUrlFor } from '../support/databases.js';

let t: TestApp<CrmTables>;
beforeEach(async () => {
  t = await createTestApp(crmService);
});
afterEach(async () => {
  await t.close();
});

const { createCustomer, readFeed } = crmFeed(() => t);

describe('creates queued behind the feed lock (PostgreSQL)', () => {
  it.runIf(postgresUrlFor('crm'))(
    'leave database connections for everything else: reads, readiness and the webhook sender still answer',
    async () => {
      const db = t.database.db as Kysely<CrmTables>;
      // Another session holds the lock that orders appends to the feed, so creates queue on it.
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let locked!: () => void;
      const lockTaken = new Promise<void>((resolve) => (locked = resolve));
      const holder = db.connection().execute(async (connection) => {
        await sql`select pg_advisory_lock(hashtext(current_schema() || '.events'))`.execute(
          connection,
        );
        locked();
        await released;
        await sql`select pg_advisory_unlock(hashtext(current_schema() || '.events'))`.execute(
          connection,
        );
      });
      await lockTaken;
      const creates = Array.from({ length: 30 }, (_, i) => createCustomer(i));
      await new Promise((resolve) => setTimeout(resolve, 200));
      // More creates wait than the pool has connections; other queries must not wait with them.
      const notBlocked = <T>(what: string, answer: Promise<T>) =>
        Promise.race([
          answer,
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error(`${what} waited for the queued creates`)), 5_000),
          ),
        ]);
      try {
        const ready = await notBlocked('/ready', t.app.inject({ method: 'GET', url: '/ready' }));
        expect(ready.statusCode).toBe(200);
        const list = await notBlocked('a list', t.app.inject({ method: 'GET', url: '/customers' }));
        expect(list.json()).toEqual([]);
      } finally {
        release();
        await holder;
      }
      const created = await Promise.all(creates);
      expect(new Set(created.map((c) => c.id)).size).toBe(30);
      const { events } = await readFeed('after=0&limit=100');
      expect(events.map((e) => e.data.id).sort()).toEqual(created.map((c) => c.id).sort());
    },
    30_000,
  );
});

describe('appends that commit out of order (PostgreSQL)', () => {
  it.runIf(postgresUrlFor('crm'))(
    'commit without waiting for an open one, and the feed holds them back until it commits',
    async () => {
      const db = t.database.db as Kysely<CrmTables>;
      const log = new EventLog(db, t.database.dialect);
      const held = {
        id: '00000000-0000-4000-8000-000000000001',
        name: 'Held',
        email: 'held@example.com',
        created_at: new Date().toISOString(),
        version: 1,
        updated_at: new Date().toISOString(),
      };
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let appended!: () => void;
      const eventAppended = new Promise<void>((resolve) => (appended = resolve));
      // Its event is written, with the lowest position; its transaction stays open until released.
      const first = log.append(
        { type: 'customer.created', data: held, occurredAt: held.created_at },
        held,
        async (trx) => {
          appended();
          await released;
          await trx
            .insertInto('customers')
            .values({ ...held, email_normalized: held.email })
            .execute();
          return [true];
        },
      );
      await eventAppended;
      const later = [await createCustomer(1), await createCustomer(2)];
      try {
        expect((await readFeed('after=0')).events).toEqual([]);
        expect((await readFeed('after=0&wait=300')).events).toEqual([]);
      } finally {
        release();
        await first;
      }
      const { events } = await readFeed('after=0&wait=5000');
      expect(events.map((e) => e.data.id)).toEqual([held.id, ...later.map((c) => c.id)]);
      const positions = events.map((e) => e.position);
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
    },
  );

  it.runIf(postgresUrlFor('crm'))(
    'frees the append lock when an append fails while holding it',
    async () => {
      const db = t.database.db as Kysely<CrmTables>;
      const log = new EventLog(db, t.database.dialect);
      const broken = { id: null, name: 'No id', email: 'x@example.com', created_at: '' };
      // customer_id is not null: the insert fails after the lock was taken, before its release.
      await expect(
        log.append(
          {
            type: 'customer.created',
            data: broken as unknown as Customer,
            occurredAt: new Date().toISOString(),
          },
          broken,
          async () => [true],
        ),
      ).rejects.toThrow(/customer_id/);
      // Asked from a session of its own: the one that failed is back in the pool.
      const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
      const other = new pg.Client({ connectionString: postgresUrlFor('crm') });
      await other.connect();
      let taken: boolean;
      try {
        const answer = await other.query<{ locked: boolean }>(
          `select pg_try_advisory_lock(hashtext($1 || '.events')) as locked`,
          [rows[0]!.schema],
        );
        taken = answer.rows[0]!.locked;
      } finally {
        await other.end();
      }
      expect(taken).toBe(true);
      await createCustomer(1);
    },
  );

  it('moves past the position a refused create used', async () => {
    const first = await createCustomer(1);
    const refused = await t.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'Again', email: 'c1@example.com' }),
    });
    expect(refused.statusCode).toBe(409);
    const second = await createCustomer(2);
    // A transaction of another test on the same server may hold the gap open for a moment.
    const seen: string[] = [];
    const deadline = Date.now() + 5_000;
    let cursor = 0;
    while (seen.length < 2 && Date.now() < deadline) {
      const { events } = await readFeed(`after=${cursor}&wait=1000`);
      for (const event of events) {
        seen.push(event.data.id);
        cursor = event.position;
      }
    }
    expect(seen).toEqual([first.id, second.id]);
  });
});
