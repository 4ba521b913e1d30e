import { randomUUID } from 'node:crypto';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import type { ReceivedMessage } from '../../../src/core/amqp.js';
import {
  adminChannel,
  countReady,
  customer,
  getMessage,
  startConnection,
  startConsumer,
  startPublisher,
  uniqueTopology,
  useAmqpFixtures,
  waitFor,
} from '../../support/amqp-fixtures.js';

class NonRetryableError extends Error {
  override name = 'NonRetryableError';
}

useAmqpFixtures();

describe('AmqpConsumer', () => {
  it('receives a confirmed message with its id and parsed body, and acks it', async () => {
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-consume-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    const received: ReceivedMessage[] = [];
    const consumer = await startConsumer(connection, topology, {
      handle: async (message) => {
        received.push(message);
      },
    });
    expect(consumer.isSubscribed).toBe(true);

    await publisher.publish({ id: 'evt-1', body: customer('c1'), headers: { 'x-trace': 't1' } });
    await waitFor(() => received.length === 1, 5_000, 'the delivery');

    expect(received[0]).toMatchObject({
      messageId: 'evt-1',
      routingKey: 'customer.created',
      body: customer('c1'),
      redelivered: false,
      deliveryCount: 0,
    });
    expect(received[0]!.headers).toMatchObject({ 'x-trace': 't1' });
    // Once the consumer is gone an unacked message would be ready again: none is.
    await consumer.close();
    expect(await countReady(topology.queue)).toBe(0);
  });

  it('dead-letters a body that is not JSON without calling the handler', async () => {
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-malformed-${randomUUID()}`);
    const received: ReceivedMessage[] = [];
    await startConsumer(connection, topology, {
      handle: async (message) => {
        received.push(message);
      },
    });

    adminChannel.publish(topology.exchange, topology.routingKey, Buffer.from('{"oops": '), {
      messageId: 'evt-bad',
      persistent: true,
    });

    const dead = await getMessage(topology.deadLetterQueue);
    expect(dead.content.toString()).toBe('{"oops": ');
    expect(dead.properties.messageId).toBe('evt-bad');
    expect(dead.properties.headers?.['x-first-death-reason']).toBe('rejected');
    expect(dead.properties.headers?.['x-first-death-queue']).toBe(topology.queue);
    expect(received).toHaveLength(0);
    expect(await countReady(topology.queue)).toBe(0);
  });

  it('dead-letters a message whose handler fails permanently, at once', async () => {
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-permanent-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    let calls = 0;
    await startConsumer(connection, topology, {
      handle: async () => {
        calls += 1;
        throw new NonRetryableError('Inventory answered 422');
      },
    });

    await publisher.publish({ id: 'evt-422', body: customer('c1') });

    const dead = await getMessage(topology.deadLetterQueue);
    expect(dead.properties.messageId).toBe('evt-422');
    expect(JSON.parse(dead.content.toString())).toEqual(customer('c1'));
    expect(calls).toBe(1);
  });

  it('accepts its own test for permanent errors', async () => {
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-predicate-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    await startConsumer(connection, topology, {
      handle: async () => {
        throw new Error('unknown customer');
      },
      isPermanent: (error) => error instanceof Error && error.message === 'unknown customer',
    });

    await publisher.publish({ id: 'evt-unknown', body: customer('c1') });

    expect((await getMessage(topology.deadLetterQueue)).properties.messageId).toBe('evt-unknown');
  });

  it('tries a message again in place after transient failures, using none of the delivery limit', async () => {
    const topology = uniqueTopology({ deliveryLimit: 2 });
    const connection = await startConnection(`amqp-test-in-place-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    const deliveries: ReceivedMessage[] = [];
    const consumer = await startConsumer(connection, topology, {
      retryBackoff: { baseMs: 20, maxDelayMs: 20 },
      // The database is away for five tries, more than the delivery limit would allow.
      handle: async (message) => {
        deliveries.push(message);
        if (deliveries.length <= 5) throw new Error('database unreachable');
      },
    });

    await publisher.publish({ id: 'evt-outage', body: customer('c1') });
    await waitFor(() => deliveries.length === 6, 5_000, 'the sixth try');
    // One delivery, tried six times: never back in the queue, never near the dead-letter queue.
    expect(deliveries.map((d) => [d.messageId, d.redelivered, d.deliveryCount])).toEqual(
      Array.from({ length: 6 }, () => ['evt-outage', false, 0]),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(deliveries).toHaveLength(6);
    await consumer.close();
    expect(await countReady(topology.queue)).toBe(0);
    expect(await countReady(topology.deadLetterQueue)).toBe(0);
  });

  it('requeues a message after a transient failure that outlasts retryInPlaceMs, then acks the redelivery', async () => {
    // The worst case for a window of 0, made certain: the backoff picks no wait at all (the
    // jitter's lowest) and the clock stands still, as when the handler fails within a millisecond.
    // Still no try in place.
    const random = vi.spyOn(Math, 'random').mockReturnValue(0);
    vi.useFakeTimers({ toFake: ['Date'] });
    onTestFinished(() => {
      vi.useRealTimers();
      random.mockRestore();
    });
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-transient-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    const deliveries: ReceivedMessage[] = [];
    const consumer = await startConsumer(connection, topology, {
      retryBackoff: { baseMs: 20, maxDelayMs: 20 },
      retryInPlaceMs: 0,
      handle: async (message) => {
        deliveries.push(message);
        if (deliveries.length === 1) throw new Error('Inventory answered 503');
      },
    });

    await publisher.publish({ id: 'evt-503', body: customer('c1') });
    await waitFor(() => deliveries.length === 2, 5_000, 'the redelivery');

    expect(deliveries.map((d) => [d.messageId, d.redelivered, d.deliveryCount])).toEqual([
      ['evt-503', false, 0],
      ['evt-503', true, 1],
    ]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(deliveries).toHaveLength(2);
    await consumer.close();
    expect(await countReady(topology.queue)).toBe(0);
    expect(await countReady(topology.deadLetterQueue)).toBe(0);
  });

  it('dead-letters a message that keeps failing once the delivery limit is used up', async () => {
    const topology = uniqueTopology({ deliveryLimit: 2 });
    const connection = await startConnection(`amqp-test-poison-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    let calls = 0;
    await startConsumer(connection, topology, {
      retryBackoff: { baseMs: 10, maxDelayMs: 10 },
      retryInPlaceMs: 0,
      handle: async () => {
        calls += 1;
        throw new Error('still failing');
      },
    });

    await publisher.publish({ id: 'evt-poison', body: customer('c1') });

    const dead = await getMessage(topology.deadLetterQueue);
    expect(dead.properties.messageId).toBe('evt-poison');
    expect(dead.properties.headers?.['x-first-death-reason']).toBe('delivery_limit');
    // The first delivery and the two redeliveries the limit allows: the third requeue takes
    // x-delivery-count past 2. (The 4th and 5th calls once seen in CI were not the broker's: the
    // consumer tried a delivery again in place when the jitter picked no wait.)
    expect(calls).toBe(3);
  });

  it('close() waits for handlers in flight, which still ack', async () => {
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-drain-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    let started = 0;
    let finished = 0;
    const consumer = await startConsumer(connection, topology, {
      handle: async () => {
        started += 1;
        await new Promise((resolve) => setTimeout(resolve, 300));
        finished += 1;
      },
    });

    await Promise.all([1, 2, 3].map((n) => publisher.publish({ id: `evt-${n}`, body: { n } })));
    await waitFor(() => started === 3, 5_000, 'three handlers to start');
    await consumer.close();

    expect(finished).toBe(3);
    expect(consumer.isSubscribed).toBe(false);
    expect(await countReady(topology.queue)).toBe(0);
  });
});
