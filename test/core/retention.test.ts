import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logging.js';
import { migrate } from '../../src/core/migrations.js';
import { RetentionSweeper, readRetentionMs } from '../../src/core/retention.js';
import { readIntegrationConfig } from '../../src/integration/config.js';
import { integrationMigrations, type IntegrationTables } from '../../src/integration/migrations.js';
import { INTEGRATION_RETAINED } from '../../src/integration/service.js';
import { inventoryMigrations, type InventoryTables } from '../../src/inventory/migrations.js';
import { INVENTORY_RETAINED } from '../../src/inventory/service.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

const DAY = 86_400_000;
const NOW = Date.parse('2026-12-03T12:00:00Z');
const logger = createLogger({ service: 'test', level: 'silent', format: 'json' });

let database: TestDatabase<unknown> | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

describe('the retention sweep', () => {
  it('deletes pushed message ids and timeline entries older than RETENTION_DAYS, in batches, and keeps the rest', async () => {
    const test = await createTestDatabase<IntegrationTables>('integration');
    database = test as TestDatabase<unknown>;
    await migrate(test, integrationMigrations);
    const old = NOW - 31 * DAY;
    const recent = NOW - 29 * DAY;
    const entries = (at: number, count: number, prefix: string) =>
      Array.from({ length: count }, (_, i) => ({
        customer_id: `${prefix}-${i}`,
        at,
        kind: 'event' as const,
        result: 'taken' as const,
      }));
    await test.db
      .insertInto('timeline_entries')
      .values(entries(old, 1_200, 'old'))
      .execute();
    await test.db
      .insertInto('timeline_entries')
      .values(entries(recent, 3, 'new'))
      .execute();
    await test.db
      .insertInto('received_messages')
      .values([
        { message_id: 'm-old', source: 'webhook', received_at: old },
        { message_id: 'm-new', source: 'webhook', received_at: recent },
      ])
      .execute();

    const sweeper = new RetentionSweeper(test.db, INTEGRATION_RETAINED, 30 * DAY, logger);
    expect(await sweeper.sweep(NOW)).toEqual({
      received_messages: 1,
      timeline_entries: 1_200,
      alert_outbox: 0,
    });
    expect(await sweeper.sweep(NOW)).toEqual({
      received_messages: 0,
      timeline_entries: 0,
      alert_outbox: 0,
    });
    const left = await test.db.selectFrom('timeline_entries').select('customer_id').execute();
    expect(left.map((row) => row.customer_id).sort()).toEqual(['new-0', 'new-1', 'new-2']);
    expect(await test.db.selectFrom('received_messages').select('message_id').execute()).toEqual([
      { message_id: 'm-new' },
    ]);
  });

  it('deletes Inventory’s idempotency records older than RETENTION_DAYS, and keeps the rest', async () => {
    const test = await createTestDatabase<InventoryTables>('inventory');
    database = test as TestDatabase<unknown>;
    await migrate(test, inventoryMigrations);
    const record = (key: string, at: number) => ({
      key,
      request_fingerprint: 'f',
      state: 'completed' as const,
      response_status: 201,
      response_body: '{}',
      created_at: new Date(at).toISOString(),
    });
    await test.db
      .insertInto('idempotency_keys')
      .values([record('old', NOW - 8 * DAY), record('new', NOW - 6 * DAY)])
      .execute();
    const sweeper = new RetentionSweeper(test.db, INVENTORY_RETAINED, 7 * DAY, logger);
    expect(await sweeper.sweep(NOW)).toEqual({ idempotency_keys: 1 });
    expect(await test.db.selectFrom('idempotency_keys').select('key').execute()).toEqual([
      { key: 'new' },
    ]);
  });
});

describe('RETENTION_DAYS', () => {
  it('defaults to 30 days, and is refused shorter than a day or than the integration’s redelivery window', () => {
    expect(readRetentionMs({}, DAY, 'why')).toBe(30 * DAY);
    expect(() => readRetentionMs({ RETENTION_DAYS: '0' }, DAY, 'why')).toThrow(ConfigError);
    expect(readIntegrationConfig({ RETENTION_DAYS: '2' }).retentionMs).toBe(2 * DAY);
    expect(() =>
      readIntegrationConfig({ RETENTION_DAYS: '2', DEAD_LETTER_AFTER_MS: String(3 * DAY) }),
    ).toThrow(
      'Invalid configuration: RETENTION_DAYS="2" is not allowed; keep records at least 3 day(s): a message can be redelivered until its delivery is dead-lettered (DEAD_LETTER_AFTER_MS=259200000).',
    );
  });
});

describe('INVENTORY_MAX_RPS', () => {
  it('is refused when a call could wait for its turn past half its claim', () => {
    expect(readIntegrationConfig({ INVENTORY_MAX_RPS: '1' }).inventoryMaxRps).toBe(1);
    expect(() =>
      readIntegrationConfig({ INVENTORY_MAX_RPS: '1', DELIVERY_CONCURRENCY: '64' }),
    ).toThrow(
      'INVENTORY_MAX_RPS="1" is not allowed; with DELIVERY_CONCURRENCY=64 a call may wait 64000 ms for its turn, past half a claim (30000 ms); use at least 5, or lower DELIVERY_CONCURRENCY.',
    );
  });
});
