import { randomUUID } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll } from 'vitest';
import {
  AmqpConnection,
  AmqpConsumer,
  AmqpPublisher,
  readAmqpUrl,
  resolveTopology,
  type AmqpConsumerOptions,
  type Topology,
} from '../../src/core/amqp.js';
import { rabbitmqctl } from './amqp.js';

// The tests of src/core/amqp/ run against the real broker at AMQP_URL (default the local one).
// Every test declares its own uniquely named exchanges and queues, deleted after it by the hooks
// `useAmqpFixtures()` registers, with the connections, publishers and consumers it started.
export const url = readAmqpUrl(process.env);

export let admin: ChannelModel;
export let adminChannel: Channel;
/** Run after each test, last pushed first: closes what the test started. */
export const cleanups: (() => Promise<void>)[] = [];
const topologies: Topology[] = [];

/** Registers the hooks of the calling test file: the admin connection, and the cleanup after each test. */
export function useAmqpFixtures(): void {
  beforeAll(async () => {
    admin = await connect(url, { clientProperties: { connection_name: 'amqp-test-admin' } });
    adminChannel = await admin.createChannel();
  });

  afterAll(async () => {
    await admin?.close();
  });

  afterEach(async () => {
    // Consumers and publishers first, so nothing re-declares what is deleted below.
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    for (const t of topologies.splice(0)) {
      await adminChannel.deleteQueue(t.queue);
      await adminChannel.deleteQueue(t.deadLetterQueue);
      await adminChannel.deleteExchange(t.exchange);
      await adminChannel.deleteExchange(t.deadLetterExchange);
    }
  });
}

/** A topology of names no other test uses, deleted after the test. */
export function uniqueTopology(overrides: Partial<Topology> = {}): Topology {
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

/** A connection to the broker, connected, closed after the test. */
export async function startConnection(name: string, logger: Logger = pino({ level: 'silent' })) {
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

/** A started publisher on `topology`, closed after the test. */
export async function startPublisher(connection: AmqpConnection, topology: Topology) {
  const publisher = new AmqpPublisher(connection, { topology, confirmTimeoutMs: 5_000 });
  cleanups.push(() => publisher.close());
  await publisher.start();
  return publisher;
}

/** A started consumer of `topology`'s queue, closed after the test. */
export async function startConsumer(
  connection: AmqpConnection,
  topology: Topology,
  options: Omit<AmqpConsumerOptions, 'topology'>,
) {
  const consumer = new AmqpConsumer(connection, { topology, ...options });
  cleanups.push(() => consumer.close());
  await consumer.start();
  return consumer;
}

/** Polls `check` every 20 ms until it holds; throws after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 5_000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The next message in `queue`, taken without a consumer (polls `timeoutMs` at most). */
export async function getMessage(queue: string, timeoutMs = 5_000): Promise<GetMessage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await adminChannel.get(queue, { noAck: true });
    if (message) return message;
    if (Date.now() > deadline) throw new Error(`no message arrived in ${queue}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Messages ready in `queue`, not counting those delivered and unacknowledged. */
export async function countReady(queue: string): Promise<number> {
  return (await adminChannel.checkQueue(queue)).messageCount;
}

/** Every queue on the broker, as `rabbitmqctl list_queues` describes it. */
export async function listQueues(): Promise<QueueInfo[]> {
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

export interface QueueInfo {
  name: string;
  type: string;
  arguments: [string, string, unknown][];
  messages_unacknowledged: number;
}

/** The body of a customer.created message. */
export const customer = (id: string) => ({
  customerId: id,
  name: 'Jane Doe',
  email: 'jane@example.com',
});
