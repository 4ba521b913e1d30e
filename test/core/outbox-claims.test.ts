import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimDueOutboxRows } from '../../src/core/outbox-claims.js';
import { migrate } from '../../src/core/migrations.js';
import { crmMigrations, type CrmTables } from '../../src/crm/migrations.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

// The claim is shared by the CRM's webhook messages and the integration's alerts; the CRM's
// table stands for both. Runs on PostgreSQL when CRM_DATABASE_URL is set.
const NOW = 1_000_000;

describe('claimDueOutboxRows', () => {
  let database: TestDatabase<CrmTables>;
  beforeEach(async () => {
    database = await createTestDatabase<CrmTables>('crm');
    await migrate(database, crmMigrations);
  });
  afterEach(() => database.drop());

  const addMessage = (
    eventId: string,
    fields: {
      state?: 'pending' | 'succeeded';
      nextAttemptAt?: number;
      lockedUntil?: number | null;
    },
  ) =>
    database.db
      .insertInto('webhook_messages')
      .values({
        endpoint_id: 'endpoint',
        event_id: eventId,
        event_position: 1,
        state: fields.state ?? 'pending',
        attempts: 0,
        next_attempt_at: fields.nextAttemptAt ?? NOW - 1,
        locked_until: fields.lockedUntil ?? null,
        updated_at: NOW,
      })
      .execute();
  const claim = (limit: number, now = NOW) =>
    claimDueOutboxRows(database.db, database.dialect, 'webhook_messages', {
      limit,
      lockedUntil: now + 30_000,
      now,
    });
  // The claim picks the oldest due; the rows come back in no particular order.
  const eventIds = (rows: { event_id: string }[]) => rows.map((row) => row.event_id).sort();

  it('claims due rows that are unclaimed or whose claim lapsed, oldest due first, up to the limit', async () => {
    // Inserted latest-due first: a claim in insertion order would take the wrong two.
    await addMessage('lapsed-claim', { nextAttemptAt: NOW - 5, lockedUntil: NOW - 1 });
    await addMessage('due-second', { nextAttemptAt: NOW - 10 });
    await addMessage('due-first', { nextAttemptAt: NOW - 20 });
    await addMessage('claimed', { nextAttemptAt: NOW - 30, lockedUntil: NOW + 1 });
    await addMessage('not-yet-due', { nextAttemptAt: NOW + 1 });
    await addMessage('sent', { state: 'succeeded', nextAttemptAt: NOW - 40 });

    const first = await claim(2);
    expect(eventIds(first)).toEqual(['due-first', 'due-second']);
    expect(first.every((row) => row.locked_until === NOW + 30_000)).toBe(true);
    expect(eventIds(await claim(10))).toEqual(['lapsed-claim']);
    // Everything due is claimed now: another sender finds nothing until the claims lapse.
    expect(await claim(10)).toEqual([]);
    expect(eventIds(await claim(10, NOW + 30_001))).toEqual([
      'claimed',
      'due-first',
      'due-second',
      'lapsed-claim',
      'not-yet-due',
    ]);
  });

  it('finds nothing and changes nothing when no row is due', async () => {
    await addMessage('claimed', { lockedUntil: NOW + 1 });
    await addMessage('not-yet-due', { nextAttemptAt: NOW + 1 });
    await addMessage('sent', { state: 'succeeded' });
    const before = await database.db.selectFrom('webhook_messages').selectAll().execute();

    expect(await claim(10)).toEqual([]);
    expect(await database.db.selectFrom('webhook_messages').selectAll().execute()).toEqual(before);
  });
});
