import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AlertWebhook } from '../../../src/contracts/alerts.js';
import { createLogger } from '../../../src/core/logging.js';
import { migrate } from '../../../src/core/migrations.js';
import { resolveDeadLettersIfNone } from '../../../src/integration/alerts/dead-letters.js';
import { openIncident, resolveIncident } from '../../../src/integration/alerts/incidents.js';
import { AlertMonitor, type StallingSource } from '../../../src/integration/alerts/monitor.js';
import {
  integrationMigrations,
  type IntegrationTables,
} from '../../../src/integration/migrations.js';
import { createTestDatabase, type TestDatabase } from '../../support/databases.js';
import { seedDeadLetter } from '../../support/dead-letters.js';

// Incidents: a condition alerts once however many instances see it, and once more when it ends.

let database: TestDatabase<IntegrationTables>;
beforeEach(async () => {
  database = await createTestDatabase<IntegrationTables>('integration');
  await migrate(database, integrationMigrations);
  for (const n of [1, 2]) {
    await database.db
      .insertInto('alert_endpoints')
      .values({
        id: `endpoint-${n}`,
        url: `http://127.0.0.1:400${n}/`,
        secret: 'whsec_x',
        configured: 0,
        created_at: 0,
      })
      .execute();
  }
});
afterEach(() => database.drop());

/** The alerts queued, one entry per alert (not per endpoint), oldest first. */
async function queued(): Promise<AlertWebhook[]> {
  const rows = await database.db
    .selectFrom('alert_outbox')
    .select(['alert_id', 'body'])
    .where('endpoint_id', '=', 'endpoint-1')
    .orderBy('seq')
    .execute();
  return rows.map((row) => JSON.parse(row.body) as AlertWebhook);
}

const drift = {
  type: 'audit.drift_found' as const,
  key: 'inventory',
  summary: '3 customers differ',
};

describe('openIncident and resolveIncident (the API the audit calls)', () => {
  it('queue one alert per endpoint on opening, count repeats silently, and one recovery', async () => {
    expect(await openIncident(database.db, { ...drift, details: { customers: 3 } }, 1_000)).toBe(
      true,
    );
    expect(await openIncident(database.db, drift, 2_000)).toBe(false);
    const outbox = await database.db.selectFrom('alert_outbox').selectAll().execute();
    expect(outbox).toHaveLength(2);
    expect(new Set(outbox.map((row) => row.alert_id)).size).toBe(1);
    expect(await resolveIncident(database.db, { ...drift, summary: 'in step again' }, 3_000)).toBe(
      true,
    );
    expect(await resolveIncident(database.db, drift, 4_000)).toBe(false);
    const [opened, resolved] = await queued();
    expect(opened).toMatchObject({
      type: 'audit.drift_found',
      data: { key: 'inventory', occurrences: 1, resolved_at: null, details: { customers: 3 } },
    });
    expect(resolved).toMatchObject({
      type: 'audit.drift_found.resolved',
      timestamp: new Date(3_000).toISOString(),
      data: { incident_id: opened!.data.incident_id, occurrences: 2, summary: 'in step again' },
    });
    // A new occurrence after the recovery is a new incident.
    expect(await openIncident(database.db, drift, 5_000)).toBe(true);
    expect((await queued()).map((alert) => alert.type)).toHaveLength(3);
  });

  it('open one incident when several instances see the condition at once', async () => {
    const opened = await Promise.all(
      Array.from({ length: 4 }, () =>
        database.db.transaction().execute((trx) => openIncident(trx, drift)),
      ),
    );
    expect(opened.filter(Boolean)).toHaveLength(1);
    expect(await queued()).toHaveLength(1);
  });
});

describe('the dead-letter incident', () => {
  it('resolves only once no dead letter remains', async () => {
    const customer = await seedDeadLetter(database, 'Ada');
    await openIncident(database.db, {
      type: 'delivery.dead_lettered',
      key: 'inventory',
      summary: '1',
    });
    expect(await resolveDeadLettersIfNone(database.db, database.dialect)).toBe(false);
    await database.db
      .updateTable('deliveries')
      .set({ state: 'delivered' })
      .where('customer_id', '=', customer)
      .execute();
    expect(await resolveDeadLettersIfNone(database.db, database.dialect)).toBe(true);
    expect((await queued()).map((alert) => alert.type)).toEqual([
      'delivery.dead_lettered',
      'delivery.dead_lettered.resolved',
    ]);
  });
});

describe('AlertMonitor', () => {
  const logger = createLogger({ service: 'test', level: 'silent' });
  const monitorOf = (
    backlog: { value: number },
    feeds: StallingSource[] = [],
    instanceId = 'a',
    circuitOpen = false,
  ) =>
    new AlertMonitor({
      circuitOpen: () => circuitOpen,
      db: database.db,
      dialect: database.dialect,
      backlog: async () => backlog.value,
      backlogThreshold: 10,
      forMs: 1_000,
      feeds,
      instanceId,
      logger,
    });

  it('raises backlog.high once the backlog stays over ALERT_BACKLOG for ALERT_FOR_MS, once for two instances, then its recovery', async () => {
    const backlog = { value: 11 };
    const [a, b] = [monitorOf(backlog, [], 'a'), monitorOf(backlog, [], 'b')];
    await a.check(10_000);
    await b.check(10_000);
    await a.check(10_999);
    expect(await queued()).toEqual([]);
    // A dip under the threshold starts the clock again.
    backlog.value = 10;
    await b.check(10_500);
    backlog.value = 11;
    await b.check(10_600);
    await a.check(11_000);
    await b.check(11_000);
    await b.check(11_599);
    expect((await queued()).map((alert) => alert.type)).toEqual(['backlog.high']);
    expect((await queued())[0]!.data.details).toEqual({ backlog: 11, threshold: 10 });
    backlog.value = 3;
    await a.check(12_000);
    await b.check(12_000);
    expect((await queued()).map((alert) => alert.type)).toEqual([
      'backlog.high',
      'backlog.high.resolved',
    ]);
  });

  it('raises feed.stalled for a stalled feed loop of this instance, then its recovery', async () => {
    let stalledMs: number | undefined = 45_000;
    const feed: StallingSource = { name: 'poll', stalledForMs: () => stalledMs };
    const monitor = monitorOf({ value: 0 }, [feed], 'instance-1');
    await monitor.check();
    await monitor.check();
    stalledMs = undefined;
    await monitor.check();
    const alerts = await queued();
    expect(alerts.map((alert) => alert.type)).toEqual(['feed.stalled', 'feed.stalled.resolved']);
    expect(alerts[0]!.data).toMatchObject({ key: 'poll@instance-1' });
    expect(alerts[0]!.data.summary).toContain('45 s');
  });

  it('resolves a circuit incident no instance confirms any more (its instance died), not one an instance still confirms', async () => {
    const opened = { type: 'circuit.opened' as const, key: 'inventory', summary: 'open' };
    await openIncident(database.db, opened, 0);
    const stillOpen = monitorOf({ value: 0 }, [], 'a', true);
    const healthy = monitorOf({ value: 0 }, [], 'b', false);
    await stillOpen.check(5_000);
    await healthy.check(14_000); // seen 9 s ago: within 10 s
    expect((await queued()).map((alert) => alert.type)).toEqual(['circuit.opened']);
    await healthy.check(16_000); // seen 11 s ago: its instance is gone
    const alerts = await queued();
    expect(alerts.map((alert) => alert.type)).toEqual(['circuit.opened', 'circuit.closed']);
    expect(alerts[1]!.data.summary).toContain('No instance has reported this');
    // The next outage alerts again.
    expect(await openIncident(database.db, opened, 20_000)).toBe(true);
  });
});
