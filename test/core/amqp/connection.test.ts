import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { AmqpConnection, AmqpUnavailableError } from '../../../src/core/amqp.js';
import { closeBrokerConnections } from '../../support/amqp.js';
import {
  adminChannel,
  countReady,
  customer,
  listQueues,
  startConnection,
  startConsumer,
  startPublisher,
  uniqueTopology,
  useAmqpFixtures,
  waitFor,
} from '../../support/amqp-fixtures.js';

interface LogLine {
  msg: string;
  connection?: string;
  [key: string]: unknown;
}

function createCapturingLogger() {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => lines.push(JSON.parse(line)) },
  );
  return { logger, lines };
}

useAmqpFixtures();

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
