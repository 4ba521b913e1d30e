import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { AmqpConnection, AmqpPublisher, prefixedTopology } from '../../src/core/amqp.js';
import { createLogger } from '../../src/core/logging.js';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import { AMQP_URL, deleteTopology } from '../support/amqp.js';
import type { TestApp } from '../support/apps.js';
import { createTestDatabase } from '../support/databases.js';
import { expectProblem } from '../support/apps.js';
import {
  createCustomers,
  packageRequestsByCustomer,
  startIntegration,
  startUpstreams,
  waitUntil,
  type Upstreams,
} from '../support/platform.js';

let upstreams: Upstreams | undefined;
let integration: TestApp<IntegrationTables> | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await integration?.close();
  await upstreams?.close();
  for (const cleanup of cleanups.splice(0)) await cleanup();
  integration = upstreams = undefined;
});

const status = async () =>
  (await integration!.app.inject({ method: 'GET', url: '/api/status' })).json() as {
    mode: string;
    deliveries: Record<string, number>;
    webhook: { registered: boolean; endpoint_id: string; url: string } | null;
    amqp: { connected: boolean; subscribed: boolean; dead_lettered: number | null } | null;
  };
const delivered = async () => (await status()).deliveries.delivered;
const metric = async (name: string) => {
  const text = (await integration!.app.inject({ method: 'GET', url: '/metrics' })).body;
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').at(-1)) : 0;
};

/**
 * The feed positions the integration service remembered with the messages pushed to it, and the
 * CRM's: when they match, the feed repair moves past every one of them without reading it again.
 */
const pushedAndFeedPositions = async () => {
  const pushed = await integration!.database.db
    .selectFrom('received_messages')
    .select('feed_position')
    .orderBy('feed_position')
    .execute();
  const feed = (
    await upstreams!.crm.app.inject({ method: 'GET', url: '/events?limit=1000' })
  ).json() as { position: number }[];
  return {
    pushed: pushed.map((row) => row.feed_position),
    feed: feed.map((event) => event.position),
  };
};

describe('webhook mode', () => {
  const startWebhookMode = async (env: Record<string, string> = {}) => {
    upstreams = await startUpstreams();
    // The feed repair waits long enough that every customer here is seen by push first.
    integration = await startIntegration(upstreams, {
      SYNC_MODE: 'webhook',
      GAP_REPAIR_MS: '60000',
      ...env,
    });
    await waitUntil(
      async () => (await status()).webhook?.registered === true,
      10_000,
      'registration',
    );
    return (await status()).webhook!;
  };

  it('registers itself with the CRM and delivers pushed customers within milliseconds', async () => {
    const webhook = await startWebhookMode();
    expect(webhook.url).toMatch(/\/webhooks\/crm$/);
    const ids = await createCustomers(upstreams!.crmUrl, 25);
    await waitUntil(async () => (await delivered()) === 25, 10_000, '25 deliveries');
    expect(new Set((await packageRequestsByCustomer(upstreams!.inventory)).keys())).toEqual(
      new Set(ids),
    );
    expect(await metric('integration_customers_seen_total{source="webhook"')).toBe(25);
    const positions = await pushedAndFeedPositions();
    expect(positions.pushed).toEqual(positions.feed);
  });

  it("applies a customer's change and deletion to its one package, and remembers their feed positions", async () => {
    await startWebhookMode();
    const [id] = await createCustomers(upstreams!.crmUrl, 1);
    const packageOf = async () =>
      (
        await upstreams!.inventory.database.db
          .selectFrom('package_requests')
          .selectAll()
          .where('customer_id', '=', id!)
          .execute()
      )[0];
    await waitUntil(async () => (await delivered()) === 1, 10_000, 'the delivery');
    const changed = await fetch(`${upstreams!.crmUrl}/customers/${id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Changed' }),
    });
    expect(changed.status).toBe(200);
    await waitUntil(
      async () => (await packageOf())?.recipient_name === 'Changed',
      10_000,
      'the recipient changed',
    );
    const deleted = await fetch(`${upstreams!.crmUrl}/customers/${id}`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    await waitUntil(
      async () => (await packageOf())?.status === 'cancelled',
      10_000,
      'the package cancelled',
    );
    await waitUntil(
      async () => (await pushedAndFeedPositions()).pushed.length === 3,
      10_000,
      'three webhooks',
    );
    // The feed keeps only the deletion; the positions of all three were pushed.
    const positions = await pushedAndFeedPositions();
    expect(positions.pushed.at(-1)).toEqual(positions.feed.at(-1));
    expect((await packageRequestsByCustomer(upstreams!.inventory)).get(id!)).toBe(1);
    // Erased here too: the integration keeps neither the name nor the email of the deleted customer.
    const kept = await integration!.database.db
      .selectFrom('deliveries')
      .select(['customer_name', 'customer_email', 'customer_version'])
      .where('customer_id', '=', id!)
      .executeTakeFirstOrThrow();
    expect(kept).toEqual({ customer_name: '', customer_email: null, customer_version: 3 });
  });

  it('registers idempotently: a restart reuses the endpoint instead of adding one', async () => {
    const first = await startWebhookMode();
    await integration!.close();
    integration = await startIntegration(upstreams!, {
      SYNC_MODE: 'webhook',
      WEBHOOK_URL: first.url,
    });
    await waitUntil(
      async () => (await status()).webhook?.registered === true,
      10_000,
      'registration',
    );
    expect((await status()).webhook!.endpoint_id).toBe(first.endpoint_id);
    const endpoints = (
      await upstreams!.crm.app.inject({ method: 'GET', url: '/webhook-endpoints' })
    ).json();
    expect(endpoints).toHaveLength(1);
  });

  describe('the receiver', () => {
    const signed = (
      secret: string,
      body: string,
      options: { id?: string; timestamp?: Date } = {},
    ) => {
      const id = options.id ?? randomUUID();
      const timestamp = options.timestamp ?? new Date();
      return {
        'content-type': 'application/json',
        'webhook-id': id,
        'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
        'webhook-signature': new Webhook(secret).sign(id, timestamp, body),
      };
    };
    const payload = (customerId = randomUUID()) =>
      JSON.stringify({
        type: 'customer.created',
        timestamp: new Date().toISOString(),
        data: {
          id: customerId,
          name: 'Pushed',
          email: 'p@example.com',
          created_at: new Date().toISOString(),
        },
      });
    const send = (headers: Record<string, string>, body: string) =>
      integration!.app.inject({ method: 'POST', url: '/webhooks/crm', headers, payload: body });
    const secretOf = async (endpointId: string) =>
      (
        await upstreams!.crm.app.inject({
          method: 'GET',
          url: `/webhook-endpoints/${endpointId}/secret`,
        })
      ).json().secret as string;

    it('accepts a valid signature, and refuses a tampered body, a stale timestamp and an unknown key', async () => {
      const webhook = await startWebhookMode();
      const secret = await secretOf(webhook.endpoint_id);
      const body = payload();
      expect((await send(signed(secret, body), body)).statusCode).toBe(204);
      const headers = signed(secret, body);
      expect(expectProblem(await send(headers, body.replace('Pushed', 'Pwned')), 401).code).toBe(
        'invalid_signature',
      );
      const stale = new Date(Date.now() - 6 * 60_000);
      const staleBody = payload();
      expectProblem(await send(signed(secret, staleBody, { timestamp: stale }), staleBody), 401);
      const future = new Date(Date.now() + 6 * 60_000);
      expectProblem(await send(signed(secret, staleBody, { timestamp: future }), staleBody), 401);
      const stranger = `whsec_${Buffer.from(randomUUID()).toString('base64')}`;
      expectProblem(await send(signed(stranger, staleBody), staleBody), 401);
      expectProblem(await send({ 'content-type': 'application/json' }, staleBody), 400);
      await waitUntil(async () => (await delivered()) === 1, 10_000, 'the one valid delivery');
      expect(await metric('integration_push_rejected_total{source="webhook"')).toBe(4);
    });

    it('records a redelivered webhook id once', async () => {
      const webhook = await startWebhookMode();
      const secret = await secretOf(webhook.endpoint_id);
      const body = payload();
      const id = randomUUID();
      for (let i = 0; i < 3; i += 1) {
        expect((await send(signed(secret, body, { id }), body)).statusCode).toBe(204);
      }
      await waitUntil(async () => (await delivered()) === 1, 10_000, 'the delivery');
      expect(await metric('integration_push_duplicates_total{source="webhook"')).toBe(2);
    });

    it('accepts the new key after a rotation, and the old one while it is still valid', async () => {
      const webhook = await startWebhookMode();
      const oldSecret = await secretOf(webhook.endpoint_id);
      const rotated = (
        await upstreams!.crm.app.inject({
          method: 'POST',
          url: `/webhook-endpoints/${webhook.endpoint_id}/rotate-secret`,
        })
      ).json();
      const body = payload();
      expect((await send(signed(rotated.secret, body), body)).statusCode).toBe(204);
      const other = payload();
      expect((await send(signed(oldSecret, other), other)).statusCode).toBe(204);
    });

    it('answers 400 for a verified payload that is not a customer, or not JSON', async () => {
      const webhook = await startWebhookMode();
      const secret = await secretOf(webhook.endpoint_id);
      const body = JSON.stringify({ type: 'customer.created', data: { id: 'nope' } });
      expect(expectProblem(await send(signed(secret, body), body), 400).code).toBe(
        'invalid_payload',
      );
      const notJson = '{"type": "customer.created", ';
      const problem = expectProblem(await send(signed(secret, notJson), notJson), 400);
      expect(problem.code).toBe('invalid_payload');
      expect(problem.detail).toMatch(/not JSON/);
    });
  });
});

describe.each(['webhook', 'hybrid'])('%s mode when push breaks', (mode) => {
  it('repairs from the feed what a deleted endpoint never pushed, through a restart that subscribes again', async () => {
    upstreams = await startUpstreams();
    const database = await createTestDatabase<IntegrationTables>('integration');
    cleanups.push(() => database.drop());
    const env = { SYNC_MODE: mode, GAP_REPAIR_MS: '300' };
    const registered = () =>
      waitUntil(async () => (await status()).webhook?.registered === true, 10_000, 'registration');
    integration = await startIntegration(upstreams, env, database);
    await registered();
    await createCustomers(upstreams.crmUrl, 5, { prefix: 'pushed' });
    await waitUntil(async () => (await delivered()) === 5, 10_000, 'pushed deliveries');
    expect(await metric('integration_reconciliation_found_total')).toBe(0);
    // Push breaks: the CRM no longer knows the endpoint, and nothing tells the service.
    const endpointId = (await status()).webhook!.endpoint_id;
    await upstreams.crm.app.inject({ method: 'DELETE', url: `/webhook-endpoints/${endpointId}` });
    const missed = await createCustomers(upstreams.crmUrl, 3, { prefix: 'missed' });
    await waitUntil(async () => (await delivered()) === 8, 10_000, 'repaired deliveries');
    expect(await metric('integration_reconciliation_found_total')).toBe(3);
    // More customers while the service restarts; it subscribes again as a new endpoint.
    await integration.close();
    const whileDown = await createCustomers(upstreams.crmUrl, 2, { prefix: 'down' });
    integration = await startIntegration(upstreams, env, database);
    await registered();
    const after = await createCustomers(upstreams.crmUrl, 2, { prefix: 'after' });
    await waitUntil(async () => (await delivered()) === 12, 10_000, 'every delivery');
    const requests = await packageRequestsByCustomer(upstreams.inventory);
    for (const id of [...missed, ...whileDown, ...after]) expect(requests.get(id), id).toBe(1);
    expect(requests.size).toBe(12);
  });
});

describe('amqp mode', () => {
  it('delivers each event the CRM publishes to RabbitMQ once, dead-letters malformed ones, and dedups redeliveries', async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    const amqpEnv = { AMQP_URL, AMQP_NAME_PREFIX: prefix };
    upstreams = await startUpstreams(1, { crmEnv: amqpEnv });
    integration = await startIntegration(upstreams, {
      SYNC_MODE: 'amqp',
      GAP_REPAIR_MS: '60000',
      ...amqpEnv,
    });
    await waitUntil(async () => (await status()).amqp?.subscribed === true, 10_000, 'the consumer');
    const ids = await createCustomers(upstreams.crmUrl, 30);
    await waitUntil(async () => (await delivered()) === 30, 15_000, '30 deliveries');
    expect(new Set((await packageRequestsByCustomer(upstreams.inventory)).keys())).toEqual(
      new Set(ids),
    );
    const positions = await pushedAndFeedPositions();
    expect(positions.pushed).toEqual(positions.feed);

    // A change and a deletion arrive by RabbitMQ too (the feed repair waits a minute here).
    const renamed = await fetch(`${upstreams.crmUrl}/customers/${ids[0]}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Renamed' }),
    });
    expect(renamed.status).toBe(200);
    expect(
      (await fetch(`${upstreams.crmUrl}/customers/${ids[1]}`, { method: 'DELETE' })).status,
    ).toBe(204);
    const requests = () =>
      upstreams!.inventory.database.db
        .selectFrom('package_requests')
        .select(['customer_id', 'recipient_name', 'status'])
        .where('customer_id', 'in', [ids[0]!, ids[1]!])
        .execute();
    await waitUntil(
      async () => {
        const rows = await requests();
        return (
          rows.find((row) => row.customer_id === ids[0])?.recipient_name === 'Renamed' &&
          rows.find((row) => row.customer_id === ids[1])?.status === 'cancelled'
        );
      },
      10_000,
      'the change and the deletion applied',
    );

    // Publish a duplicate of a real event, and a malformed message.
    const logger = createLogger({ service: 'test', level: 'silent' });
    const connection = new AmqpConnection({ url: AMQP_URL, logger, connectionName: 'test' });
    const publisher = new AmqpPublisher(connection, { topology: prefixedTopology(prefix) });
    connection.start();
    publisher.start();
    cleanups.push(async () => {
      await publisher.close();
      await connection.close();
      await deleteTopology(prefix);
    });
    await connection.waitUntilConnected();
    const events = (
      await upstreams.crm.app.inject({ method: 'GET', url: '/events?limit=1' })
    ).json();
    await publisher.publish({ id: events[0].id, body: events[0] });
    await publisher.publish({
      id: randomUUID(),
      body: { type: 'customer.created', data: { id: 'broken' } },
    });
    await waitUntil(
      async () =>
        (await metric('integration_push_duplicates_total{source="amqp"')) === 1 &&
        (await metric('integration_push_rejected_total{source="amqp"')) === 1,
      10_000,
      'the duplicate and the malformed message',
    );
    expect((await packageRequestsByCustomer(upstreams.inventory)).size).toBe(30);
    // The malformed message waits in RabbitMQ's dead-letter queue, in sight: status and metric.
    await waitUntil(
      async () => (await status()).amqp?.dead_lettered === 1,
      10_000,
      'the dead letter in the status',
    );
    expect(await metric('integration_amqp_dead_lettered_messages')).toBe(1);
  });

  it('delivers from the feed the customers whose messages never reach its queue', async () => {
    // The CRM publishes to another broker namespace: nothing arrives by RabbitMQ, as when every
    // message went to the broker's dead-letter queue.
    const crmEnv = { AMQP_URL, AMQP_NAME_PREFIX: `test-${randomUUID().slice(0, 8)}.` };
    const amqpEnv = { AMQP_URL, AMQP_NAME_PREFIX: `test-${randomUUID().slice(0, 8)}.` };
    upstreams = await startUpstreams(1, { crmEnv });
    integration = await startIntegration(upstreams, {
      SYNC_MODE: 'amqp',
      GAP_REPAIR_MS: '300',
      ...amqpEnv,
    });
    cleanups.push(
      () => deleteTopology(crmEnv.AMQP_NAME_PREFIX),
      () => deleteTopology(amqpEnv.AMQP_NAME_PREFIX),
    );
    const ids = await createCustomers(upstreams.crmUrl, 6);
    await waitUntil(async () => (await delivered()) === 6, 10_000, '6 repaired deliveries');
    expect(await metric('integration_reconciliation_found_total')).toBe(6);
    const requests = await packageRequestsByCustomer(upstreams.inventory);
    for (const id of ids) expect(requests.get(id)).toBe(1);
  });
});
