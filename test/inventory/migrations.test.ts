import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { PACKAGE_REQUEST_STATUSES } from '../../src/contracts/package-requests.js';
import { migrate } from '../../src/core/migrations.js';
import { fingerprintRequest } from '../../src/inventory/idempotency.js';
import { inventoryMigrations, type InventoryTables } from '../../src/inventory/migrations.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp } from '../support/apps.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

let database: TestDatabase<InventoryTables> | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

const request = (status: string) => ({
  id: randomUUID(),
  customer_id: randomUUID(),
  kind: 'welcome_package',
  status,
  created_at: '2025-01-31T09:30:00.000Z',
});

/** A database at migration 1, and its tables untyped: what the database itself holds. */
async function atVersionOne() {
  database = await createTestDatabase<InventoryTables>('inventory');
  await migrate(database, inventoryMigrations.slice(0, 1));
  return database.db as unknown as Kysely<any>;
}

describe('inventory migrations', () => {
  it('give existing requests no recipient or version, updated_at = created_at, and keep replaying their keys', async () => {
    const db = await atVersionOne();
    const old = request('pending');
    await db.insertInto('package_requests').values(old).execute();
    const input = { customer_id: old.customer_id, kind: old.kind };
    await db
      .insertInto('idempotency_keys')
      .values({
        key: `welcome-package:${old.customer_id}`,
        request_fingerprint: fingerprintRequest('POST', '/package-requests', input),
        state: 'completed',
        response_status: 201,
        response_body: JSON.stringify(old),
        created_at: old.created_at,
      })
      .execute();

    expect(await migrate(database!, inventoryMigrations)).toMatchObject({
      applied: [2, 3, 4, 5, 6],
    });
    const migrated = {
      ...old,
      recipient_name: null,
      recipient_email: null,
      customer_version: null,
      updated_at: old.created_at,
    };
    const app = await createTestApp(inventoryService, { database: database! });
    try {
      const read = await app.app.inject({ method: 'GET', url: `/package-requests/${old.id}` });
      expect(read.json()).toEqual(migrated);
      // A retry of the create that made it, sent before the upgrade, replays in the new shape.
      const retry = await app.app.inject({
        method: 'POST',
        url: '/package-requests',
        headers: { 'idempotency-key': `welcome-package:${old.customer_id}` },
        payload: input,
      });
      expect(retry.statusCode).toBe(201);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(retry.json()).toEqual(migrated);
    } finally {
      await app.close();
    }
  });

  it('keep the creates of a process of the previous version working during a rolling upgrade', async () => {
    const db = await atVersionOne();
    await migrate(database!, inventoryMigrations);
    // What the previous version inserts: none of the new columns.
    const old = request('pending');
    await db.insertInto('package_requests').values(old).execute();
    const app = await createTestApp(inventoryService, { database: database! });
    try {
      const read = await app.app.inject({ method: 'GET', url: `/package-requests/${old.id}` });
      expect(read.statusCode).toBe(200);
      expect(read.json()).toMatchObject({ id: old.id, status: 'pending', recipient_name: null });
      expect(Number.isNaN(Date.parse(read.json().updated_at))).toBe(false);
    } finally {
      await app.close();
    }
  });

  it('replay in the current shape a 201 a process of the previous version stored during a rolling upgrade', async () => {
    const db = await atVersionOne();
    await migrate(database!, inventoryMigrations);
    // What the previous version stores under a key: a 201 without the fields it did not know.
    const old = request('pending');
    await db.insertInto('package_requests').values(old).execute();
    const input = { customer_id: old.customer_id, kind: old.kind };
    await db
      .insertInto('idempotency_keys')
      .values({
        key: 'from-the-previous-version',
        request_fingerprint: fingerprintRequest('POST', '/package-requests', input),
        state: 'completed',
        response_status: 201,
        response_body: JSON.stringify(old),
        created_at: old.created_at,
      })
      .execute();
    const current = {
      ...old,
      recipient_name: null,
      recipient_email: null,
      customer_version: null,
      updated_at: old.created_at,
    };
    const app = await createTestApp(inventoryService, { database: database! });
    try {
      const retry = await app.app.inject({
        method: 'POST',
        url: '/package-requests',
        headers: { 'idempotency-key': 'from-the-previous-version' },
        payload: input,
      });
      expect(retry.statusCode, retry.body).toBe(201);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(retry.json()).toEqual(current);
      const batch = await app.app.inject({
        method: 'POST',
        url: '/package-requests/batch',
        payload: { items: [{ ...input, idempotency_key: 'from-the-previous-version' }] },
      });
      expect(batch.statusCode, batch.body).toBe(200);
      expect(batch.json().results).toEqual([{ status: 201, replayed: true, body: current }]);
    } finally {
      await app.close();
    }
  });

  it('name the request of each stored answer, and erase requests cancelled before the upgrade', async () => {
    const db = await atVersionOne();
    await migrate(database!, inventoryMigrations.slice(0, 2));
    const recipient = { recipient_name: 'Zebulon Quixote', recipient_email: 'zq@example.org' };
    const withRecipient = (status: string) => ({
      ...request(status),
      ...recipient,
      customer_version: 1,
      updated_at: '2025-01-31T09:30:00.000Z',
    });
    const cancelled = withRecipient('cancelled');
    const pendingOne = withRecipient('pending');
    await db.insertInto('package_requests').values([cancelled, pendingOne]).execute();
    const problem = (extra: object) => ({ type: 'about:blank', status: 409, code: 'x', ...extra });
    const answers = [
      ['created', 201, cancelled],
      ['cancelled', 200, cancelled],
      ['duplicate', 409, problem({ existing_request: cancelled })],
      ['refused', 409, problem({ package_request: cancelled })],
      ['other', 201, pendingOne],
    ] as const;
    await db
      .insertInto('idempotency_keys')
      .values(
        answers.map(([key, status, body]) => ({
          key,
          request_fingerprint: 'f',
          state: 'completed',
          response_status: status,
          response_body: JSON.stringify(body),
          created_at: cancelled.created_at,
        })),
      )
      .execute();

    expect(await migrate(database!, inventoryMigrations)).toMatchObject({ applied: [3, 4, 5, 6] });
    const rows = await db
      .selectFrom('package_requests')
      .select(['id', 'recipient_name', 'recipient_email'])
      .orderBy('seq')
      .execute();
    expect(rows).toEqual([
      { id: cancelled.id, recipient_name: null, recipient_email: null },
      { id: pendingOne.id, ...recipient },
    ]);
    const stored = await db
      .selectFrom('idempotency_keys')
      .select(['key', 'package_request_id', 'response_status', 'response_body'])
      .orderBy('key')
      .execute();
    expect(stored.map((row) => [row.key, row.package_request_id])).toEqual([
      ['cancelled', cancelled.id],
      ['created', cancelled.id],
      ['duplicate', cancelled.id],
      ['other', pendingOne.id],
      ['refused', cancelled.id],
    ]);
    for (const row of stored) {
      const body = JSON.parse(row.response_body);
      const held = body.existing_request ?? body.package_request ?? body;
      // Erased, not removed, and no field added: each answer keeps its shape.
      expect(held).toMatchObject(
        row.package_request_id === cancelled.id
          ? { id: cancelled.id, recipient_name: null, recipient_email: null, customer_version: 1 }
          : { id: pendingOne.id, ...recipient },
      );
      expect(Object.keys(body).some((field) => field.startsWith('recipient'))).toBe(
        row.response_status !== 409,
      );
    }
  });

  it('accept every status of the list and refuse any other, on insert and update', async () => {
    const db = await atVersionOne();
    await migrate(database!, inventoryMigrations);
    for (const status of PACKAGE_REQUEST_STATUSES) {
      await db
        .insertInto('package_requests')
        .values({ ...request(status), updated_at: '2025-01-31T09:30:00.000Z' })
        .execute();
    }
    const refused = /package_requests_status_valid|package_requests\.status must be one of/;
    await expect(
      db
        .insertInto('package_requests')
        .values({ ...request('lost'), updated_at: '2025-01-31T09:30:00.000Z' })
        .execute(),
    ).rejects.toThrow(refused);
    await expect(sql`update package_requests set status = 'Shipped'`.execute(db)).rejects.toThrow(
      refused,
    );
    const statuses = await db
      .selectFrom('package_requests')
      .select('status')
      .orderBy('seq')
      .execute();
    expect(statuses.map((row) => row.status)).toEqual([...PACKAGE_REQUEST_STATUSES]);
  });

  it('refuse to upgrade while a request has a status outside the list, changing nothing', async () => {
    const db = await atVersionOne();
    await db.insertInto('package_requests').values(request('lost')).execute();
    await expect(migrate(database!, inventoryMigrations)).rejects.toThrow(
      /Migration 2 .*1 package requests have a status other than pending, shipped, cancelled/,
    );
    expect(await db.selectFrom('schema_migrations').select('version').execute()).toEqual([
      { version: 1 },
    ]);
  });
});
