import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Kysely } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import type { Customer } from '../../src/contracts/customers.js';
import { EventLog } from '../../src/crm/events.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import type { WebhookMessageRow } from '../../src/crm/webhook-hand-off.js';
import { createTestApp, type TestApp } from '../support/apps.js';
import { crmFeed, insertCustomers } from '../support/crm-feed.js';
import { waitUntil } from '../support/platform.js';
import { startReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

let t: TestApp<CrmTables>;
let receiver: WebhookReceiver;
afterEach(async () => {
  await t.close();
  await receiver.close();
});

/**
 * The CRM (with `env`) and its webhook sender running, and an endpoint on `target` (default: a
 * receiver answering 200 at once); answers the endpoint's secret.
 */
async function startWithEndpoint(
  target?: WebhookReceiver,
  env: Record<string, string> = {},
): Promise<string> {
  receiver = target ?? (await startReceiver());
  t = await createTestApp(crmService, { env });
  await t.runtime.start?.({ url: 'http://127.0.0.1:9' });
  const created = await t.app.inject({
    method: 'POST',
    url: '/webhook-endpoints',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ url: receiver.url }),
  });
  expect(created.statusCode).toBe(201);
  return (created.json() as { secret: string }).secret;
}

const messages = () =>
  (t.database.db as Kysely<CrmTables>).selectFrom('webhook_messages').selectAll().execute();

describe("an append's webhook messages handed to the sender as they commit", () => {
  it('are sent with the event exactly as the feed serves it, once, and recorded as sent', async () => {
    const secret = await startWithEndpoint();
    const { createCustomer, readFeed } = crmFeed(() => t);
    const customer = await createCustomer(1);
    await waitUntil(() => receiver.calls.length === 1, 5_000, 'the webhook');
    const [call] = receiver.calls;
    const sent = new Webhook(secret).verify(call!.body, call!.headers as Record<string, string>);
    const { events } = await readFeed('after=0');
    const {
      id,
      occurred_at: timestamp,
      ...rest
    } = events[0]! as (typeof events)[0] & {
      traceparent?: unknown;
    };
    delete rest.traceparent;
    expect(sent).toEqual({ ...rest, timestamp });
    expect(call!.headers['webhook-id']).toBe(id);
    expect((sent as { data: { id: string } }).data.id).toBe(customer.id);
    await waitUntil(
      async () => (await messages())[0]?.state === 'succeeded',
      5_000,
      'the message recorded as sent',
    );
    expect(await messages()).toMatchObject([
      { state: 'succeeded', attempts: 1, locked_until: null },
    ]);
    expect(receiver.calls).toHaveLength(1);
  });

  it('written claimed by a CRM that stopped before sending them, are sent by another once the claim lapses', async () => {
    await startWithEndpoint();
    // Another CRM process on the same database: it claims its append's messages, then dies with
    // them unsent (its `committed` never sends).
    const claimMs = 400;
    const handedOver: WebhookMessageRow[] = [];
    const dying = new EventLog(t.database.db as Kysely<CrmTables>, t.database.dialect);
    dying.handOffWebhookMessages({
      claimUntil: (now) => now + claimMs,
      committed: (rows) => void handedOver.push(...rows),
    });
    const now = new Date().toISOString();
    const customer: Customer = {
      id: '00000000-0000-4000-8000-000000000001',
      name: 'Claimed Then Lost',
      email: 'lost@example.com',
      version: 1,
      created_at: now,
      updated_at: now,
    };
    const insert = insertCustomers;
    const appendedAt = Date.now();
    expect(
      await dying.append(
        { type: 'customer.created', data: customer, occurredAt: now },
        customer,
        insert,
      ),
    ).toBe(true);
    // Written claimed, and handed to the process that claimed them.
    expect(handedOver).toHaveLength(1);
    const [written] = await messages();
    expect(written).toMatchObject({ state: 'pending', seq: handedOver[0]!.seq });
    expect(written!.locked_until).toBeGreaterThan(Date.now());
    await waitUntil(() => receiver.calls.length === 1, 5_000, 'the webhook after the claim lapsed');
    // Not before the claim lapsed: this process did not take the other one's message.
    expect(Date.now() - appendedAt).toBeGreaterThanOrEqual(claimMs);
    expect(JSON.parse(receiver.calls[0]!.body)).toMatchObject({ data: { id: customer.id } });
    await waitUntil(
      async () => (await messages())[0]?.state === 'succeeded',
      5_000,
      'the message recorded as sent',
    );
    // Time for a second send, were there one.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(receiver.calls).toHaveLength(1);
  });

  it('never make more calls at once than WEBHOOK_CONCURRENCY, when a burst commits together', async () => {
    // A receiver that answers each call after 50 ms, counting the calls it holds at once.
    let held = 0;
    let most = 0;
    const ids: string[] = [];
    const server = http.createServer((request, response) => {
      held += 1;
      most = Math.max(most, held);
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () =>
        setTimeout(() => {
          ids.push((JSON.parse(body) as { data: { id: string } }).data.id);
          held -= 1;
          response.writeHead(200).end();
        }, 50),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    // Two batches of two.
    await startWithEndpoint(
      {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
        calls: [],
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
      },
      { WEBHOOK_CONCURRENCY: '4' },
    );
    const { createCustomer } = crmFeed(() => t);
    const customers = await Promise.all(Array.from({ length: 40 }, (_, i) => createCustomer(i)));
    await waitUntil(() => ids.length >= 40, 10_000, '40 webhooks');
    expect(most).toBeLessThanOrEqual(4);
    expect(ids.sort()).toEqual(customers.map((customer) => customer.id).sort());
  });
});
