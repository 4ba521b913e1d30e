import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { IntegrationTables } from '../../../src/integration/migrations.js';
import { startAlertReceiver, type AlertReceiver } from '../../support/alert-receiver.js';
import { integrationService } from '../../../src/integration/service.js';
import { createTestApp, type TestApp } from '../../support/apps.js';
import {
  createCustomers,
  startIntegration,
  usePlatform,
  waitUntil,
} from '../../support/platform.js';

// Alerts as an operator's receiver gets them: signed (verified here as Standard Webhooks say),
// one per incident, sent from the outbox until the receiver takes them.

const start = usePlatform();
let receivers: AlertReceiver[] = [];
afterEach(async () => {
  for (const receiver of receivers) await receiver.close();
  receivers = [];
});

/** Settings that make alerts quick to retry and the monitor quick to look, for tests. */
const FAST_ALERTS = { ALERT_RETRY_BASE_MS: '50', ALERT_FOR_MS: '200' };

async function receiverFor(
  integration: Pick<TestApp<IntegrationTables>, 'app'>,
  respond?: Parameters<typeof startAlertReceiver>[1],
) {
  const receiver = await startAlertReceiver(integration, respond);
  receivers.push(receiver);
  return receiver;
}

const deadLetterCount = async (integration: TestApp<IntegrationTables>) => {
  const status = await integration.app.inject({ method: 'GET', url: '/api/status' });
  return (status.json() as { deliveries: { dead: number } }).deliveries.dead;
};

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('alert webhooks', () => {
  it('sends one verified delivery.dead_lettered alert for 20 dead letters, and its resolution after the replay', async () => {
    // One delivery per call: the 20 dead letters are settled one by one, each could alert.
    const { upstreams, integration } = await start(
      { ...FAST_ALERTS, DELIVERY_BATCH_SIZE: '1' },
      (upstreams) => {
        upstreams.proxy.answer = () => ({
          status: 422,
          body: { detail: 'blocked', code: 'blocked' },
        });
      },
    );
    const receiver = await receiverFor(integration);
    await createCustomers(upstreams.crmUrl, 20);
    await waitUntil(
      async () => (await deadLetterCount(integration)) === 20,
      20_000,
      '20 dead letters',
    );
    await waitUntil(() => receiver.calls.length > 0, 10_000, 'the alert');
    await pause(1_000); // time for any further (wrong) alert to arrive
    const [alert, ...more] = receiver.alerts();
    expect(more).toEqual([]);
    expect(alert).toMatchObject({
      type: 'delivery.dead_lettered',
      data: { key: 'inventory', resolved_at: null },
    });
    expect(alert!.data.occurrences).toBeGreaterThanOrEqual(1);
    expect(alert!.data.summary).toContain('dead letters');
    expect(receiver.calls[0]!.headers['webhook-id']).toBe(alert!.webhookId);

    upstreams.proxy.answer = undefined; // the cause is fixed
    const replay = await integration.app.inject({
      method: 'POST',
      url: '/api/dead-letters/replay',
    });
    expect(replay.json()).toMatchObject({ replayed: 20 });
    await waitUntil(() => receiver.calls.length === 2, 15_000, 'the resolution');
    const resolved = receiver.alerts()[1]!;
    expect(resolved).toMatchObject({
      type: 'delivery.dead_lettered.resolved',
      data: { incident_id: alert!.data.incident_id, occurrences: 20 },
    });
    expect(resolved.data.resolved_at).not.toBeNull();
  });

  it('sends circuit.opened once while Inventory fails, then circuit.closed when it recovers', async () => {
    const { upstreams, integration } = await start(
      { ...FAST_ALERTS, CIRCUIT_RESET_MS: '1000' },
      (upstreams) => (upstreams.proxy.plan = { rate: 1, kinds: ['status_503'] }),
    );
    const receiver = await receiverFor(integration);
    await createCustomers(upstreams.crmUrl, 20);
    await waitUntil(() => receiver.ofType('circuit.opened').length > 0, 15_000, 'circuit.opened');
    // The circuit half-opens and opens again every second while Inventory fails: one alert.
    await pause(2_500);
    expect(receiver.ofType('circuit.opened')).toHaveLength(1);
    expect(receiver.ofType('circuit.closed')).toHaveLength(0);
    upstreams.proxy.plan = { rate: 0, kinds: [] };
    await waitUntil(() => receiver.ofType('circuit.closed').length > 0, 15_000, 'circuit.closed');
    const [opened] = receiver.ofType('circuit.opened');
    const [closed] = receiver.ofType('circuit.closed');
    expect(closed!.data.incident_id).toBe(opened!.data.incident_id);
    expect(closed!.data.key).toBe('inventory');
    expect(receiver.ofType('delivery.dead_lettered')).toEqual([]);
  });

  it('retries an alert the receiver refused, and delivers it once it answers 2xx, with the same webhook-id', async () => {
    const { upstreams, integration } = await start(FAST_ALERTS, (upstreams) => {
      upstreams.proxy.answer = () => ({
        status: 422,
        body: { detail: 'blocked', code: 'blocked' },
      });
    });
    const receiver = await receiverFor(integration, (call) => ({ status: call <= 2 ? 500 : 200 }));
    await createCustomers(upstreams.crmUrl, 1);
    await waitUntil(() => receiver.calls.length === 3, 15_000, 'three attempts');
    await pause(500);
    expect(receiver.calls).toHaveLength(3);
    const ids = receiver.alerts().map((alert) => alert.webhookId);
    expect(new Set(ids).size).toBe(1);
    const row = await integration.database.db
      .selectFrom('alert_outbox')
      .selectAll()
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ state: 'sent', attempts: 3, last_status: 200 });
  });

  it('an alert left in the outbox by a stopped instance is sent by the next one on the same database', async () => {
    const { upstreams, integration } = await start(FAST_ALERTS, (upstreams) => {
      upstreams.proxy.answer = () => ({
        status: 422,
        body: { detail: 'blocked', code: 'blocked' },
      });
    });
    let receiving = false;
    const receiver = await receiverFor(integration, () => ({ status: receiving ? 200 : 503 }));
    await createCustomers(upstreams.crmUrl, 1);
    await waitUntil(() => receiver.calls.length > 0, 15_000, 'a refused attempt');
    // The first instance stops with the alert unsent; its database stays.
    await integration.runtime.stop?.();
    const { database } = integration;
    const outbox = () => database.db.selectFrom('alert_outbox').selectAll().execute();
    expect((await outbox()).map((row) => row.state)).toEqual(['pending']);

    const refused = receiver.calls.length;
    receiving = true;
    const next = await startIntegration(upstreams, FAST_ALERTS, database);
    try {
      await waitUntil(
        async () => (await outbox())[0]?.state === 'sent',
        15_000,
        'the alert sent by the next instance',
      );
      expect(receiver.calls).toHaveLength(refused + 1);
      const ids = new Set(receiver.alerts().map((alert) => alert.webhookId));
      expect(ids.size).toBe(1);
      expect(receiver.alerts().at(-1)!.type).toBe('delivery.dead_lettered');
    } finally {
      await next.runtime.stop?.();
      await next.app.close();
    }
  });
});

describe('feed.stalled', () => {
  let silentCrm: net.Server | undefined;
  const held = new Set<net.Socket>();
  let integration: TestApp<IntegrationTables> | undefined;
  afterEach(async () => {
    await integration?.close();
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => silentCrm?.close(resolve));
    integration = silentCrm = undefined;
  });

  it('alerts once when the feed loop stalls on a CRM that accepts and never answers', async () => {
    // Accepts connections and says nothing.
    silentCrm = net.createServer((socket) => held.add(socket));
    await new Promise<void>((resolve) => silentCrm!.listen(0, '127.0.0.1', resolve));
    const crmUrl = `http://127.0.0.1:${(silentCrm.address() as net.AddressInfo).port}`;
    integration = await createTestApp(integrationService, {
      env: {
        ...FAST_ALERTS,
        CRM_URL: crmUrl,
        INVENTORY_URL: 'http://127.0.0.1:9',
        SYNC_MODE: 'poll',
        POLL_INTERVAL_MS: '100',
        REQUEST_TIMEOUT_MS: '300000',
        INSTANCE_ID: 'stalling',
      },
    });
    const receiver = await receiverFor(integration);
    await integration.runtime.start?.({ url: 'http://127.0.0.1:9' });
    await waitUntil(() => receiver.calls.length > 0, 10_000, 'feed.stalled');
    await pause(1_000);
    const [alert, ...more] = receiver.alerts();
    expect(more).toEqual([]);
    expect(alert).toMatchObject({ type: 'feed.stalled', data: { key: 'poll@stalling' } });
    expect(alert!.data.summary).toContain('has not finished a read of the CRM feed');
  });
});
