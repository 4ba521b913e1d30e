import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  AmqpConnection,
  AmqpPublishError,
  AmqpPublisher,
  AmqpUnavailableError,
} from '../../../src/core/amqp.js';
import {
  cleanups,
  countReady,
  customer,
  getMessage,
  startConnection,
  startPublisher,
  uniqueTopology,
  url,
  useAmqpFixtures,
} from '../../support/amqp-fixtures.js';

useAmqpFixtures();

describe('AmqpPublisher', () => {
  it('publishes persistent JSON with id, type and timestamp, confirmed by the broker', async () => {
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-publish-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    const before = Math.floor(Date.now() / 1000);

    await publisher.publish({ id: 'evt-1', body: customer('c1'), headers: { 'x-trace': 't1' } });

    const message = await getMessage(topology.queue);
    expect(JSON.parse(message.content.toString())).toEqual(customer('c1'));
    expect(message.fields.routingKey).toBe('customer.created');
    expect(message.properties).toMatchObject({
      messageId: 'evt-1',
      type: 'customer.created',
      contentType: 'application/json',
      deliveryMode: 2,
    });
    expect(message.properties.headers).toMatchObject({ 'x-trace': 't1' });
    expect(message.properties.timestamp).toBeGreaterThanOrEqual(before);
  });

  it('rejects what it cannot hand over: unroutable, not connected, closed', async () => {
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-reject-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);

    await expect(
      publisher.publish({ id: 'evt-x', routingKey: 'nobody.binds.this', body: {} }),
    ).rejects.toThrow(AmqpPublishError);

    const idle = new AmqpPublisher(new AmqpConnection({ url, logger: pino({ level: 'silent' }) }), {
      topology,
    });
    await expect(idle.publish({ id: 'evt-y', body: {} })).rejects.toThrow(AmqpUnavailableError);

    await publisher.close();
    await expect(publisher.publish({ id: 'evt-z', body: {} })).rejects.toThrow(
      AmqpUnavailableError,
    );
    expect(await countReady(topology.queue)).toBe(0);
  });

  it('refuses at once while the broker is down, rather than holding messages in memory', async () => {
    const connection = new AmqpConnection({
      url: 'amqp://guest:guest@127.0.0.1:1',
      logger: pino({ level: 'silent' }),
      reconnectBackoff: { baseMs: 20, maxDelayMs: 50 },
    });
    cleanups.push(() => connection.close());
    connection.start();
    const publisher = new AmqpPublisher(connection, { confirmTimeoutMs: 5_000 });
    cleanups.push(() => publisher.close());
    await publisher.start();

    const started = Date.now();
    await expect(publisher.publish({ id: 'evt-down', body: {} })).rejects.toThrow(
      AmqpUnavailableError,
    );
    // Well within the confirm timeout: the caller's outbox keeps the event, not our memory.
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(publisher.isReady).toBe(false);
  });
});
