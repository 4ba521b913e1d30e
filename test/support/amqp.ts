import { connect } from 'amqplib';
import { prefixedTopology } from '../../src/core/amqp.js';

/** The local broker the RabbitMQ tests use. */
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Removes a test's prefixed exchanges and queues from the broker. */
export async function deleteTopology(prefix: string): Promise<void> {
  const connection = await connect(AMQP_URL);
  const channel = await connection.createChannel();
  const names = prefixedTopology(prefix);
  for (const queue of [names.queue!, names.deadLetterQueue!]) await channel.deleteQueue(queue);
  for (const exchange of [names.exchange!, names.deadLetterExchange!]) {
    await channel.deleteExchange(exchange);
  }
  await connection.close();
}
