import { randomUUID } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AmqpConnection,
  AmqpConsumer,
  AmqpPublishError,
  AmqpPublisher,
  AmqpUnavailableError,
  DEFAULT_TOPOLOGY,
  assertTopology,
  readAmqpUrl,
  resolveTopology,
  type AmqpConsumerOptions,
  type ReceivedMessage,
  type Topology,
} from '../../src/core/amqp.js';
import { closeBrokerConnections, rabbitmqctl } from '../support/amqp.js';

// Runs against the real broker at AMQP_URL (default the local one). Every test declares its own
// uniquely named exchanges and queues and deletes them afterwards.
const url = readAmqpUrl(process.env);

class NonRetryableError extends Error {
  override name = 'NonRetryableError';
}

interface LogLine {
  msg: string;
  connection?: string;
  [key: string]: unknown;
}

let admin: ChannelModel;
let adminChannel: Channel;
let cleanups: (() => Promise<void>)[] = [];
let topologies: Topology[] = [];

beforeAll(async () => {
  admin = await connect(url, { clientProperties: { connection_name: 'amqp-test-admin' } });
  adminChannel = await admin.createChannel();
});

afterAll(async () => {
  await admin?.close();
});

afterEach(async () => {
  // Consumers and publishers first, so nothing re-declares what is deleted below.
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
  for (const t of topologies) {
    await adminChannel.deleteQueue(t.queue);
    await adminChannel.deleteQueue(t.deadLetterQueue);
    await adminChannel.deleteExchange(t.exchange);
    await adminChannel.deleteExchange(t.deadLetterExchange);
  }
  topologies = [];
});

function uniqueTopology(overrides: Partial<Topology> = {}): Topology {
  const suffix = `${process.pid}.${randomUUID().slice(0, 8)}`;
  const topology = resolveTopology({
    exchange: `test.crm.events.${suffix}`,
    queue: `test.integration.customer-created.${suffix}`,
    deadLetterExchange: `test.crm.events.dlx.${suffix}`,
    deadLetterQueue: `test.integration.customer-created.dead.${suffix}`,
    ...overrides,
  });
  topologies.push(topology);
  return topology;
}

function createCapturingLogger() {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => lines.push(JSON.parse(line)) },
  );
  return { logger, lines };
}

async function startConnection(name: string, logger: Logger = pino({ level: 'silent' })) {
  const connection = new AmqpConnection({
    url,
    logger: logger.child({ connection: name }),
    connectionName: name,
    reconnectBackoff: { baseMs: 100, maxDelayMs: 1_000 },
  });
  cleanups.push(() => connection.close());
  connection.start();
  await connection.waitUntilConnected(5_000);
  return connection;
}

async function startPublisher(connection: AmqpConnection, topology: Topology) {
  const publisher = new AmqpPublisher(connection, { topology, confirmTimeoutMs: 5_000 });
  cleanups.push(() => publisher.close());
  await publisher.start();
  return publisher;
}

async function startConsumer(
  connection: AmqpConnection,
  topology: Topology,
  options: Omit<AmqpConsumerOptions, 'topology'>,
) {
  const consumer = new AmqpConsumer(connection, { topology, ...options });
  cleanups.push(() => consumer.close());
  await consumer.start();
  return consumer;
}

async function waitFor(check: () => boolean, timeoutMs = 5_000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function getMessage(queue: string, timeoutMs = 5_000): Promise<GetMessage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await adminChannel.get(queue, { noAck: true });
    if (message) return message;
    if (Date.now() > deadline) throw new Error(`no message arrived in ${queue}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function countReady(queue: string): Promise<number> {
  return (await adminChannel.checkQueue(queue)).messageCount;
}

async function listQueues(): Promise<QueueInfo[]> {
  return JSON.parse(
    await rabbitmqctl(
      'list_queues',
      'name',
      'type',
      'arguments',
      'messages_unacknowledged',
      '--formatter',
      'json',
    ),
  ) as QueueInfo[];
}

interface QueueInfo {
  name: string;
  type: string;
  arguments: [string, string, unknown][];
  messages_unacknowledged: number;
}

const customer = (id: string) => ({ customerId: id, name: 'Jane Doe', email: 'jane@example.com' });

describe('assertTopology', () => {
  it('uses the production names by default', () => {
    expect(DEFAULT_TOPOLOGY).toEqual({
      exchange: 'crm.events',
      routingKey: 'customer.created',
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

describe('AmqpConnection', () => {
  it('recovers publisher and consumer after the broker drops the connections', async () => {
    const topology = uniqueTopology();
    const run = randomUUID();
    const { logger, lines } = createCapturingLogger();
    const publishing = await startConnection(`amqp-test-reconnect-pub-${run}`, logger);
    const consuming = await startConnection(`amqp-test-reconnect-con-${run}`, logger);
    const publisher = await startPublisher(publishing, topology);
    const received: string[] = [];
    const consumer = await startConsumer(consuming, topology, {
      handle: async (message) => {
        received.push(message.messageId ?? '?');
      },
    });
    await publisher.publish({ id: 'before', body: customer('c1') });
    await waitFor(() => received.includes('before'), 5_000, 'the first delivery');
    // Settled before the drop, so that it is not redelivered (delivery is at least once).
    expect((await listQueues()).find((q) => q.name === topology.queue)).toMatchObject({
      messages_unacknowledged: 0,
    });

    expect(await closeBrokerConnections(run)).toBe(2);

    // An outbox relay retries until the broker confirms.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await publisher.publish({ id: 'after', body: customer('c2') });
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    await waitFor(() => received.includes('after'), 10_000, 'the delivery after the drop');
    await new Promise((resolve) => setTimeout(resolve, 300));

    expect(received).toEqual(['before', 'after']);
    expect(publishing.isConnected).toBe(true);
    expect(consuming.isConnected).toBe(true);
    expect(consumer.isSubscribed).toBe(true);
    for (const name of ['pub', 'con']) {
      const mine = lines.filter((line) => line.connection === `amqp-test-reconnect-${name}-${run}`);
      expect(mine.map((line) => line.msg)).toEqual(
        expect.arrayContaining(['AMQP connection lost; reconnecting', 'AMQP connected']),
      );
      expect(mine.filter((line) => line.msg === 'AMQP connected').length).toBe(2);
      // The URL's credentials never reach the log.
      expect(JSON.stringify(mine)).not.toContain('guest:guest');
    }
    await consumer.close();
    expect(await countReady(topology.queue)).toBe(0);
  });

  it('declares and subscribes again when the broker cancels the consumer', async () => {
    const topology = uniqueTopology();
    const { logger, lines } = createCapturingLogger();
    const connection = await startConnection(`amqp-test-cancel-${randomUUID()}`, logger);
    const publisher = await startPublisher(connection, topology);
    const received: string[] = [];
    const consumer = await startConsumer(connection, topology, {
      handle: async (message) => {
        received.push(message.messageId ?? '?');
      },
    });

    await adminChannel.deleteQueue(topology.queue);
    await waitFor(
      () => lines.filter((line) => line.msg === 'AMQP consumer subscribed').length === 2,
      5_000,
      'the consumer to subscribe again',
    );
    await waitFor(() => publisher.isReady, 5_000, 'the publisher to be ready again');

    await publisher.publish({ id: 'evt-again', body: customer('c1') });
    await waitFor(() => received.length === 1, 5_000, 'the delivery');
    expect(received).toEqual(['evt-again']);
    expect(consumer.isSubscribed).toBe(true);
    expect(lines.map((line) => line.msg)).toContain(
      'AMQP consumer cancelled by the broker; resubscribing',
    );
  });

  it('keeps retrying an unreachable broker until closed', async () => {
    const { logger, lines } = createCapturingLogger();
    const connection = new AmqpConnection({
      url: 'amqp://guest:guest@127.0.0.1:1',
      logger,
      reconnectBackoff: { baseMs: 20, maxDelayMs: 50 },
    });
    connection.start();
    await expect(connection.waitUntilConnected(500)).rejects.toThrow(AmqpUnavailableError);
    expect(connection.isConnected).toBe(false);
    expect(
      lines.filter((line) => line.msg === 'AMQP connect failed; retrying with backoff').length,
    ).toBeGreaterThan(1);
    await connection.close();
    const attempts = lines.length;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(lines.length).toBe(attempts);
  });
});
