import type { Channel, Message } from 'amqplib';
import type { AmqpChannel, AmqpConnection } from './connection.js';
import { AmqpPublishError, AmqpUnavailableError } from './errors.js';
import { assertTopology, resolveTopology, type Topology } from './topology.js';

export interface OutgoingEvent {
  /** Sent as `messageId`; consumers deduplicate on it. */
  id: string;
  /** Default: the topology's routing key (`customer.created`). */
  routingKey?: string;
  /** Serialised as JSON. */
  body: unknown;
  headers?: Record<string, string>;
}

export interface AmqpPublisherOptions {
  /** Default `DEFAULT_TOPOLOGY`. */
  topology?: Partial<Topology>;
  /** Reject a publish the broker has not confirmed after this many ms. Default 10 000. */
  confirmTimeoutMs?: number;
}

/**
 * Publishes persistent JSON on a confirm channel. `publish` resolves only once the broker has
 * taken responsibility for the message; otherwise it rejects and the caller keeps the event.
 * While the channel is down it rejects at once rather than queueing in memory: the caller's
 * outbox is the buffer.
 */
export class AmqpPublisher {
  private readonly topology: Topology;
  private readonly confirmTimeoutMs: number;
  private channel: AmqpChannel | undefined;
  /** Ids of messages the broker returned as unroutable, on the current channel. */
  private returned = new Set<string>();
  private readonly pending = new Set<Promise<void>>();
  private closing = false;

  constructor(
    private readonly connection: AmqpConnection,
    options: AmqpPublisherOptions = {},
  ) {
    this.topology = resolveTopology(options.topology);
    this.confirmTimeoutMs = options.confirmTimeoutMs ?? 10_000;
  }

  /** Opens the channel now if connected, and again after every reconnect. */
  async start(): Promise<void> {
    if (this.closing || this.channel) return;
    this.channel = this.connection.openChannel({
      name: 'publisher',
      confirm: true,
      setup: (channel) => this.prepare(channel),
    });
    await this.channel.started;
  }

  /** Whether a publish could be confirmed right now. */
  get isReady(): boolean {
    return !this.closing && this.channel?.isReady === true;
  }

  publish(event: OutgoingEvent): Promise<void> {
    const channel = this.channel;
    if (!channel?.isReady || this.closing) {
      return Promise.reject(
        new AmqpUnavailableError(`cannot publish ${event.id}: not connected to RabbitMQ`),
      );
    }
    const json = JSON.stringify(event.body);
    if (json === undefined) {
      return Promise.reject(new TypeError(`cannot publish ${event.id}: body is not JSON`));
    }
    const routingKey = event.routingKey ?? this.topology.routingKey;
    const confirmed = channel.wrapper
      .publish(this.topology.exchange, routingKey, Buffer.from(json), {
        persistent: true,
        // An unroutable message is confirmed too, yet lost; mandatory makes the broker return it
        // (before the confirm), so it can be refused here instead.
        mandatory: true,
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        messageId: event.id,
        type: routingKey,
        timestamp: Math.floor(Date.now() / 1000),
        headers: event.headers ?? {},
        timeout: this.confirmTimeoutMs,
      })
      .then(
        () => {
          if (this.returned.delete(event.id)) {
            throw new AmqpPublishError(
              `${event.id} was unroutable: no queue bound to ${this.topology.exchange} ` +
                `takes ${routingKey}`,
              event.id,
            );
          }
        },
        (error: unknown) => {
          this.returned.delete(event.id);
          const reason = error instanceof Error ? error.message : String(error);
          // amqp-connection-manager rejects with 'timeout' when no confirm came in time.
          throw new AmqpPublishError(
            reason === 'timeout'
              ? `no confirm for ${event.id} within ${this.confirmTimeoutMs} ms`
              : `broker refused ${event.id}: ${reason}`,
            event.id,
          );
        },
      );
    const tracked = confirmed.catch(() => undefined);
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
    return confirmed;
  }

  /** Waits for outstanding confirms, then closes the channel; later publishes reject. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.pending);
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close();
  }

  private async prepare(channel: Channel): Promise<void> {
    const returned = new Set<string>();
    channel.on('return', (message: Message) => {
      const id: unknown = message.properties.messageId;
      if (typeof id === 'string') returned.add(id);
    });
    // Declaring the queue too, not just the exchange: a topic exchange drops what no queue binds.
    await assertTopology(channel, this.topology);
    this.returned = returned;
  }
}
