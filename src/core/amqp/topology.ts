import { connect, type Channel } from 'amqplib';
import { CUSTOMER_EVENT_TYPES } from '../../contracts/customer-events.js';

export const CRM_EVENTS_EXCHANGE = 'crm.events';
export const CUSTOMER_CREATED_ROUTING_KEY = 'customer.created';
export const CRM_EVENTS_DEAD_LETTER_EXCHANGE = 'crm.events.dlx';
/** The integration's queue; named when it carried creations only, it now takes every customer event. */
export const CUSTOMER_CREATED_QUEUE = 'integration.customer-created';
export const CUSTOMER_CREATED_DEAD_LETTER_QUEUE = 'integration.customer-created.dead';
export const DEFAULT_DELIVERY_LIMIT = 10;

/** Names and limits of the exchanges and queues; tests pass their own unique names. */
export interface Topology {
  /** Durable topic exchange events are published to. Default `crm.events`. */
  exchange: string;
  /** Routing key published with when an event names none. Default `customer.created`. */
  routingKey: string;
  /**
   * Routing keys the consumer queue is bound on. Default every customer event type
   * (`customer.created`, `customer.updated`, `customer.deleted`).
   */
  bindingKeys: readonly string[];
  /** Durable quorum queue the consumer reads. Default `integration.customer-created`. */
  queue: string;
  /** Durable topic exchange rejected messages go to. Default `crm.events.dlx`. */
  deadLetterExchange: string;
  /** Durable queue holding the dead letters. Default `integration.customer-created.dead`. */
  deadLetterQueue: string;
  /** Deliveries before the quorum queue dead-letters a message that keeps failing. Default 10. */
  deliveryLimit: number;
}

export const DEFAULT_TOPOLOGY: Readonly<Topology> = Object.freeze({
  exchange: CRM_EVENTS_EXCHANGE,
  routingKey: CUSTOMER_CREATED_ROUTING_KEY,
  bindingKeys: CUSTOMER_EVENT_TYPES,
  queue: CUSTOMER_CREATED_QUEUE,
  deadLetterExchange: CRM_EVENTS_DEAD_LETTER_EXCHANGE,
  deadLetterQueue: CUSTOMER_CREATED_DEAD_LETTER_QUEUE,
  deliveryLimit: DEFAULT_DELIVERY_LIMIT,
});

/**
 * The default topology with every exchange and queue name prefixed, so that several environments
 * (or test runs) can share one broker: `AMQP_NAME_PREFIX=staging.` gives `staging.crm.events`…
 */
export function prefixedTopology(prefix: string): Partial<Topology> {
  return {
    exchange: prefix + CRM_EVENTS_EXCHANGE,
    queue: prefix + CUSTOMER_CREATED_QUEUE,
    deadLetterExchange: prefix + CRM_EVENTS_DEAD_LETTER_EXCHANGE,
    deadLetterQueue: prefix + CUSTOMER_CREATED_DEAD_LETTER_QUEUE,
  };
}

export function resolveTopology(overrides: Partial<Topology> = {}): Topology {
  return { ...DEFAULT_TOPOLOGY, ...overrides };
}

/** The consumer queue's arguments; redeclaring the queue with different ones fails. */
export function buildQueueArguments(topology: Topology): Record<string, unknown> {
  return {
    'x-queue-type': 'quorum',
    'x-delivery-limit': topology.deliveryLimit,
    'x-dead-letter-exchange': topology.deadLetterExchange,
    // Dead letters are routed by the queue they died in, so that other queues may share the
    // dead-letter exchange without their dead letters mixing; x-death keeps the original key.
    'x-dead-letter-routing-key': topology.queue,
  };
}

/**
 * Declares the exchanges, queues and bindings. Idempotent: declaring what exists is a no-op, but
 * a queue that exists with other arguments makes the broker close the channel
 * (PRECONDITION_FAILED).
 */
export async function assertTopology(
  channel: Channel,
  overrides: Partial<Topology> = {},
): Promise<Topology> {
  const topology = resolveTopology(overrides);
  await channel.assertExchange(topology.deadLetterExchange, 'topic', { durable: true });
  await channel.assertQueue(topology.deadLetterQueue, {
    durable: true,
    arguments: { 'x-queue-type': 'quorum' },
  });
  await channel.bindQueue(topology.deadLetterQueue, topology.deadLetterExchange, topology.queue);
  await channel.assertExchange(topology.exchange, 'topic', { durable: true });
  await channel.assertQueue(topology.queue, {
    durable: true,
    arguments: buildQueueArguments(topology),
  });
  // Binding is idempotent: a queue declared by an earlier version (customer.created only) gains
  // the new event types here.
  for (const key of topology.bindingKeys) {
    await channel.bindQueue(topology.queue, topology.exchange, key);
  }
  return topology;
}

/** Deletes the exchanges and queues of the topology with `prefix` (tests and benchmarks). */
export async function deleteTopology(url: string, prefix: string): Promise<void> {
  const connection = await connect(url);
  try {
    const channel = await connection.createChannel();
    const names = prefixedTopology(prefix);
    for (const queue of [names.queue!, names.deadLetterQueue!]) await channel.deleteQueue(queue);
    for (const exchange of [names.exchange!, names.deadLetterExchange!]) {
      await channel.deleteExchange(exchange);
    }
  } finally {
    await connection.close();
  }
}
