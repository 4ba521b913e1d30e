import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach } from 'vitest';
import { migrate } from '../../src/core/migrations.js';
import { integrationMigrations, type IntegrationTables } from '../../src/integration/migrations.js';
import type { NewDelivery } from '../../src/integration/store/new-delivery.js';
import { createSyncStore, type SyncStore } from '../../src/integration/store/sync-store.js';
import { createTestDatabase, type TestDatabase } from './databases.js';

let database: TestDatabase<IntegrationTables> | undefined;
let current: SyncStore | undefined;

/** The integration store on a fresh, migrated test database for each test of the file. */
export function useSyncStore(): SyncStore {
  beforeEach(async () => {
    database = await createTestDatabase<IntegrationTables>('integration');
    await migrate(database, integrationMigrations);
    current = createSyncStore(database);
  });
  afterEach(async () => {
    await database?.drop();
    database = current = undefined;
  });
  return new Proxy({} as SyncStore, {
    get: (_target, key: keyof SyncStore) => {
      if (!current) throw new Error('The store exists only while a test runs.');
      return current[key];
    },
  });
}

/** Records pushed customers as a message of their own, as a webhook or RabbitMQ would. */
export const record = (items: NewDelivery[], now?: number) =>
  current!.inbox.recordMessage({ id: randomUUID(), source: 'test' }, items, now);

export const item = (n: number): NewDelivery => ({
  customerId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
  customerName: `C${n}`,
  customerEmail: `c${n}@example.com`,
  customerVersion: 1,
  deletedAt: null,
  customerCreatedAt: 0,
  changedAt: 0,
  eventType: 'customer.created',
  eventId: `e${n}`,
  source: 'poll',
});
