import { deleteTopology as deleteBrokerTopology } from '../../src/core/amqp.js';

/** The local broker the RabbitMQ tests use. */
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Removes a test's prefixed exchanges and queues from the broker. */
export function deleteTopology(prefix: string): Promise<void> {
  return deleteBrokerTopology(AMQP_URL, prefix);
}
