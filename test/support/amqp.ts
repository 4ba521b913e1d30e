import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect } from 'amqplib';
import {
  assertTopology,
  deleteTopology as deleteBrokerTopology,
  prefixedTopology,
} from '../../src/core/amqp.js';

/** The local broker the RabbitMQ tests use. */
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Removes a test's prefixed exchanges and queues from the broker. */
export function deleteTopology(prefix: string): Promise<void> {
  return deleteBrokerTopology(AMQP_URL, prefix);
}

// Asynchronous on purpose: a blocked event loop would hold back acks still to be written.
export async function rabbitmqctl(...args: string[]): Promise<string> {
  return (await promisify(execFile)('rabbitmqctl', ['-q', ...args], { encoding: 'utf8' })).stdout;
}

/**
 * Makes the broker drop our named connections, the way `rabbitmqctl close_all_connections` does,
 * without touching anybody else's.
 */
export async function closeBrokerConnections(namePart: string): Promise<number> {
  const listing = await rabbitmqctl(
    'list_connections',
    '--no-table-headers',
    'pid',
    'client_properties',
  );
  const pids = listing
    .split('\n')
    .filter((line) => line.includes(namePart))
    .map((line) => line.split('\t')[0]!.trim());
  for (const pid of pids) await rabbitmqctl('close_connection', pid, 'test');
  return pids.length;
}

/** Messages waiting in the dead-letter queue of the topology named with `prefix`. */
export async function countDeadLettered(prefix: string): Promise<number> {
  const connection = await connect(AMQP_URL);
  try {
    const { deadLetterQueue } = prefixedTopology(prefix);
    if (!deadLetterQueue) return 0;
    const channel = await connection.createChannel();
    return (await channel.checkQueue(deadLetterQueue)).messageCount;
  } finally {
    await connection.close();
  }
}

/**
 * The message ids of everything published to the queue of the topology named with `prefix`,
 * declared here (as the consumers declare it) so that nothing published from now on is missed.
 * `close()` stops reading.
 */
export async function readPublishedIds(
  prefix: string,
): Promise<{ received: string[]; close: () => Promise<void> }> {
  const connection = await connect(AMQP_URL);
  const channel = await connection.createChannel();
  const topology = await assertTopology(channel, prefixedTopology(prefix));
  const received: string[] = [];
  await channel.consume(
    topology.queue,
    (message) => {
      if (message) received.push(String(message.properties.messageId));
    },
    { noAck: true },
  );
  return { received, close: () => connection.close() };
}
