import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TOPOLOGY, assertTopology } from '../../../src/core/amqp.js';
import {
  admin,
  adminChannel,
  listQueues,
  startConnection,
  startPublisher,
  uniqueTopology,
  useAmqpFixtures,
} from '../../support/amqp-fixtures.js';

useAmqpFixtures();

describe('assertTopology', () => {
  it('uses the production names by default', () => {
    expect(DEFAULT_TOPOLOGY).toEqual({
      exchange: 'crm.events',
      routingKey: 'customer.created',
      bindingKeys: ['customer.created', 'customer.updated', 'customer.deleted'],
      queue: 'integration.customer-created',
      deadLetterExchange: 'crm.events.dlx',
      deadLetterQueue: 'integration.customer-created.dead',
      deliveryLimit: 10,
    });
  });

  it('declares the quorum queue with its delivery limit and DLX, idempotently', async () => {
    const topology = uniqueTopology();
    const connection = await startConnection(`amqp-test-topology-${randomUUID()}`);
    const publisher = await startPublisher(connection, topology);
    expect(publisher.isReady).toBe(true);
    // Declaring it all again is a no-op.
    await assertTopology(adminChannel, topology);

    const queues = await listQueues();
    const queue = queues.find((q) => q.name === topology.queue);
    expect(queue?.type).toBe('quorum');
    const args = Object.fromEntries(queue!.arguments.map(([key, , value]) => [key, value]));
    expect(args).toMatchObject({
      'x-queue-type': 'quorum',
      'x-delivery-limit': 10,
      'x-dead-letter-exchange': topology.deadLetterExchange,
    });
    expect(queues.find((q) => q.name === topology.deadLetterQueue)).toBeDefined();

    // The broker refuses a declaration that disagrees (on a throwaway channel it then closes).
    const probe = await admin.createChannel();
    probe.on('error', () => undefined);
    await expect(
      probe.assertQueue(topology.queue, {
        durable: true,
        arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 5 },
      }),
    ).rejects.toThrow(/PRECONDITION_FAILED/);
  });
});
