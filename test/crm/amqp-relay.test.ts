import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import {
  AMQP_URL,
  closeBrokerConnections,
  deleteTopology,
  readPublishedIds,
} from '../support/amqp.js';
import { connect } from 'amqplib';
import { assertTopology, prefixedTopology } from '../../src/core/amqp.js';
import { createTestApp, type TestApp } from '../support/apps.js';
import { createCustomers, listen, waitUntil } from '../support/platform.js';

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  // Every cleanup runs, the last registered first, even after one fails; the first failure is
  // reported.
  const steps = cleanups.reverse();
  cleanups = [];
  let failure: unknown;
  for (const cleanup of steps) {
    try {
      await cleanup();
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure) throw failure;
});

async function publishedTotal(crm: TestApp<CrmTables>): Promise<number> {
  const text = (await crm.app.inject({ method: 'GET', url: '/metrics' })).body;
  return Number(/^crm_amqp_published_total(?:\{[^}]*\})? (\d+)$/m.exec(text)?.[1] ?? NaN);
}

describe('AmqpRelay', () => {
  it('publishes every committed event through a broker connection kill, counting each once confirmed, and keeps its position', async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    cleanups.push(() => deleteTopology(prefix));
    // Read before the relay starts, so nothing is missed.
    const { received, close } = await readPublishedIds(prefix);
    cleanups.push(close);

    const crm = await createTestApp(crmService, {
      env: { AMQP_URL, AMQP_NAME_PREFIX: prefix },
    });
    cleanups.push(() => crm.close());
    const url = await listen(crm.app);
    await crm.runtime.start?.({ url });
    const eventIds = async () =>
      (await crm.database.db.selectFrom('events').select('id').execute()).map((row) => row.id);
    const allReceived = async () => {
      const ids = await eventIds();
      return ids.every((id) => received.includes(id));
    };

    await createCustomers(url, 40);
    await waitUntil(allReceived, 15_000, 'the first 40 events');

    // Customers created while the relay's connection is cut are published once it is back.
    const creating = createCustomers(url, 40);
    expect(await closeBrokerConnections(`${prefix}crm-relay`)).toBe(1);
    await creating;
    await waitUntil(allReceived, 30_000, 'all 80 events after the connection kill');

    expect(new Set(received).size).toBe(80);
    const last = await crm.database.db
      .selectFrom('events')
      .select((eb) => eb.fn.max('position').as('position'))
      .executeTakeFirstOrThrow();
    const cursor = await crm.database.db
      .selectFrom('relay_cursors')
      .select('position')
      .where('name', '=', 'amqp')
      .executeTakeFirstOrThrow();
    expect(Number(cursor.position)).toBe(Number(last.position));
    // A batch counts only when all of it is confirmed, and the cursor then moves past it: each
    // event is counted exactly once, however often it was sent.
    expect(await publishedTotal(crm)).toBe(80);
  }, 60_000);

  it("publishes each event under its type as routing key: a change reaches every queue bound to it, the integration's among them", async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    cleanups.push(() => deleteTopology(prefix));
    const created = await readPublishedIds(prefix);
    cleanups.push(created.close);
    // A consumer of every customer event binds its own queue to customer.*.
    const connection = await connect(AMQP_URL);
    cleanups.push(() => connection.close());
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, prefixedTopology(prefix).exchange!, 'customer.*');
    const everything: { routingKey: string; type: string; version: number }[] = [];
    await channel.consume(
      queue,
      (message) => {
        if (!message) return;
        const body = JSON.parse(message.content.toString()) as {
          type: string;
          data: { version: number };
        };
        everything.push({
          routingKey: message.fields.routingKey,
          type: body.type,
          version: body.data.version,
        });
      },
      { noAck: true },
    );

    const crm = await createTestApp(crmService, { env: { AMQP_URL, AMQP_NAME_PREFIX: prefix } });
    cleanups.push(() => crm.close());
    const url = await listen(crm.app);
    await crm.runtime.start?.({ url });
    const [id] = await createCustomers(url, 1);
    const changed = await fetch(`${url}/customers/${id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Renamed' }),
    });
    expect(changed.status).toBe(200);
    // Two queues, read on two connections: a message reaches them at different moments (the
    // quorum queue commits through Raft first), so both are awaited before either is checked.
    await waitUntil(
      () => everything.length === 2 && created.received.length === 2,
      15_000,
      'both events in both queues',
    );
    expect(everything).toEqual([
      { routingKey: 'customer.created', type: 'customer.created', version: 1 },
      { routingKey: 'customer.updated', type: 'customer.updated', version: 2 },
    ]);
    // The integration's queue is bound to every customer event type.
    expect(created.received).toHaveLength(2);
  }, 60_000);

  it('sends a batch the broker refused part-way again from the cursor once the broker takes it: nothing skipped, each counted once', async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    cleanups.push(() => deleteTopology(prefix));
    const connection = await connect(AMQP_URL);
    cleanups.push(() => connection.close());
    const channel = await connection.createChannel();
    const topology = await assertTopology(channel, prefixedTopology(prefix));
    // A second queue bound to every event refuses each message past its 300th, and a publish
    // that any queue refuses is refused (nacked): of the relay's batches of 200, the second is
    // taken for its first 100 events and refused for the rest.
    const { queue: full } = await channel.assertQueue('', {
      exclusive: true,
      arguments: { 'x-max-length': 300, 'x-overflow': 'reject-publish' },
    });
    await channel.bindQueue(full, topology.exchange, '#');

    const crm = await createTestApp(crmService, { env: { AMQP_URL, AMQP_NAME_PREFIX: prefix } });
    cleanups.push(() => crm.close());
    const url = await listen(crm.app);
    // Written before the relay starts, so it finds five batches waiting.
    await createCustomers(url, 1_000, { concurrency: 16 });
    const events = await crm.database.db
      .selectFrom('events')
      .select(['id', 'position'])
      .orderBy('position')
      .execute();
    expect(events).toHaveLength(1_000);
    const cursor = async () =>
      Number(
        (
          await crm.database.db
            .selectFrom('relay_cursors')
            .select('position')
            .where('name', '=', 'amqp')
            .executeTakeFirst()
        )?.position ?? 0,
      );
    const { received, close } = await readPublishedIds(prefix);
    cleanups.push(close);
    await crm.runtime.start?.({ url });

    // The first batch is confirmed whole; the second, refused part-way, is tried again and
    // refused again: the cursor stays after the first, which alone is counted.
    await waitUntil(
      async () => (await cursor()) === events[199]!.position,
      15_000,
      'the cursor past the first batch',
    );
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await cursor()).toBe(events[199]!.position);
    expect(await publishedTotal(crm)).toBe(200);
    expect((await channel.checkQueue(full)).messageCount).toBe(300);

    // The broker takes everything once the full queue is gone.
    await channel.deleteQueue(full);
    await waitUntil(
      async () => (await cursor()) === events[999]!.position,
      30_000,
      'the cursor past the last event',
    );
    await waitUntil(() => new Set(received).size === 1_000, 15_000, 'every event in the queue');
    expect(events.every(({ id }) => received.includes(id))).toBe(true);
    expect(await publishedTotal(crm)).toBe(1_000);
  }, 90_000);
});
