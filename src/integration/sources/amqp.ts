import {
  AmqpConnection,
  AmqpConsumer,
  prefixedTopology,
  type ReceivedMessage,
} from '../../core/amqp.js';
import { Gauge, type Registry } from 'prom-client';
import type { AmqpStatus } from '../../contracts/admin-api.js';
import { redactUrl } from '../../core/config.js';
import type { Logger } from '../../core/logging.js';
import { NonRetryableError } from '../../core/retryable-errors.js';
import type { IntegrationMetrics } from '../metrics.js';
import { deliveryOfEvent } from '../store/new-delivery.js';
import { parsePushedCustomerEvent } from '../../contracts/customer-events.js';
import type { Inbox, Source, SourceContext } from './source.js';

export interface AmqpSourceOptions {
  url: string;
  namePrefix: string;
  prefetch: number;
  metrics: IntegrationMetrics;
  /** Where the dead-letter queue's depth is reported. Default: nowhere. */
  registry?: Registry;
  logger: Logger;
}

/**
 * `SYNC_MODE=amqp`: consumes the CRM's events from a durable quorum queue. A message is acked only
 * after its customer and its message id are committed to the database, so a crash before that
 * leaves it with the broker for redelivery, and a redelivery after it changes nothing. A malformed
 * message is dead-lettered at once; the dead-letter queue's depth is in the status and a metric,
 * so nothing waits there unseen.
 */
export class AmqpSource implements Source {
  readonly name = 'amqp';
  readonly statusField = 'amqp';
  private readonly connection: AmqpConnection;
  private readonly consumer: AmqpConsumer;
  private inbox: Inbox | undefined;

  constructor(private readonly options: AmqpSourceOptions) {
    this.connection = new AmqpConnection({
      url: options.url,
      logger: options.logger,
      connectionName: `${options.namePrefix}integration-consumer`,
    });
    this.consumer = new AmqpConsumer(this.connection, {
      topology: prefixedTopology(options.namePrefix),
      prefetch: options.prefetch,
      handle: (message) => this.handle(message),
    });
    if (options.registry) {
      const consumer = this.consumer;
      new Gauge({
        name: 'integration_amqp_dead_lettered_messages',
        help: 'Messages in RabbitMQ’s dead-letter queue (read from the broker at scrape time).',
        registers: [options.registry],
        async collect() {
          const count = await consumer.countDeadLettered().catch(() => undefined);
          if (count !== undefined) this.set(count);
        },
      });
    }
  }

  async details(): Promise<AmqpStatus> {
    return {
      connected: this.connection.isConnected,
      subscribed: this.consumer.isSubscribed,
      dead_lettered: (await this.consumer.countDeadLettered().catch(() => undefined)) ?? null,
    };
  }

  /** Never: while the broker is away, the CRM's outbox and the queue keep the events for later. */
  notReadyReason(): undefined {
    return undefined;
  }

  start(inbox: Inbox): void {
    this.inbox = inbox;
    this.options.logger.info(
      `Consuming CRM events from RabbitMQ at ${redactUrl(this.options.url)}`,
    );
    this.connection.start();
    this.consumer.start();
  }

  async stop(): Promise<void> {
    await this.consumer.close();
    await this.connection.close();
  }

  private async handle(message: ReceivedMessage): Promise<void> {
    const { metrics } = this.options;
    const parsed = parsePushedCustomerEvent(message.body);
    const messageId = message.messageId ?? (message.body as { id?: unknown } | null)?.id;
    if (!parsed.ok || typeof messageId !== 'string') {
      metrics.pushRejected.inc({ source: 'amqp' });
      const problems = parsed.ok ? ['the message has no id'] : parsed.problems;
      throw new NonRetryableError(
        `not a customer event with a message id: ${problems.join('; ')}`,
        400,
      );
    }
    const event = parsed.value;
    const delivery = deliveryOfEvent(
      {
        type: event.type,
        id: messageId,
        data: event.data,
        traceparent: message.headers.traceparent,
      },
      'amqp',
    );
    if (delivery && !delivery.ok) {
      metrics.pushRejected.inc({ source: 'amqp' });
      throw new NonRetryableError(
        `a ${event.type} event whose data is not what that type carries: ${delivery.problems.join('; ')}`,
        400,
      );
    }
    // The consumer starts after the inbox is set: a message here always has one. A type this
    // service does not handle is recorded with no delivery, its feed position seen.
    const accepted = await this.inbox!.recordPushed(
      { id: messageId, source: 'amqp', feedPosition: event.position },
      delivery ? [delivery.value] : [],
    );
    if (accepted === undefined) metrics.pushDuplicates.inc({ source: 'amqp' });
  }
}

/** The RabbitMQ source with the service's settings. */
export const createAmqpSource = ({ config, metrics, registry, logger }: SourceContext) =>
  new AmqpSource({
    // readIntegrationConfig refuses amqp mode without AMQP_URL.
    url: config.amqpUrl!,
    namePrefix: config.amqpNamePrefix,
    prefetch: config.amqpPrefetch,
    metrics,
    registry,
    logger,
  });
