import type { Channel, ConsumeMessage } from 'amqplib';
import { retryDelayMs } from '../backoff.js';
import type { Logger } from '../logging.js';
import { Wakeup } from '../wakeup.js';
import type { AmqpChannel, AmqpConnection, Backoff } from './connection.js';
import { assertTopology, resolveTopology, type Topology } from './topology.js';

export interface ReceivedMessage {
  messageId: string | undefined;
  routingKey: string;
  /** The parsed JSON body. */
  body: unknown;
  headers: Record<string, unknown>;
  /** True when the broker delivered this message before (to us or to another consumer). */
  redelivered: boolean;
  /** Earlier failed deliveries, from the quorum queue's `x-delivery-count`; 0 the first time. */
  deliveryCount: number;
}

export interface AmqpConsumerOptions {
  /** Called once per delivery; the message is acked when it resolves. */
  handle: (message: ReceivedMessage) => Promise<void>;
  /** Default `DEFAULT_TOPOLOGY`. */
  topology?: Partial<Topology>;
  /** Unacked messages the broker sends ahead, and so handlers running at once. Default 100. */
  prefetch?: number;
  /** Errors retrying cannot fix, dead-lettered at once. Default: named `NonRetryableError`. */
  isPermanent?: (error: unknown) => boolean;
  /**
   * Waits between tries of a message whose handler failed, growing with each try.
   * Default `{ baseMs: 1000, maxDelayMs: 30_000 }`.
   */
  retryBackoff?: Backoff;
  /**
   * How long a failing message is tried again here, holding it, before it goes back to the queue
   * (which counts a delivery): an outage downstream shorter than this uses none of the delivery
   * limit, and ten times it is the least time before the broker dead-letters. Below RabbitMQ's
   * consumer timeout (30 min), which would close the channel. 0 requeues at the first failure.
   * Default 25 min.
   */
  retryInPlaceMs?: number;
}

/** Default of `retryInPlaceMs`: 25 min. */
export const RETRY_IN_PLACE_MS = 25 * 60_000;

type Outcome = 'ack' | 'requeue' | 'dead-letter';

export function isNonRetryableError(error: unknown): boolean {
  return error instanceof Error && error.name === 'NonRetryableError';
}

/**
 * Consumes the queue with manual acks: ack after `handle` resolves, dead-letter malformed JSON
 * and permanent errors; a transient failure is tried again here with backoff for up to
 * `retryInPlaceMs`, then requeued (the delivery limit dead-letters what keeps failing).
 * Delivery is at least once: `handle` must be idempotent on `messageId`.
 */
export class AmqpConsumer {
  private readonly topology: Topology;
  private readonly handle: AmqpConsumerOptions['handle'];
  private readonly prefetch: number;
  private readonly isPermanent: (error: unknown) => boolean;
  private readonly retryBackoff: Backoff;
  private readonly retryInPlaceMs: number;
  private readonly logger: Logger;
  private channel: AmqpChannel | undefined;
  /** The raw channel delivering to us and our tag on it, while subscribed. */
  private subscription: { channel: Channel; consumerTag: string } | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  /** Waits between tries in progress, cut short by `close()`. */
  private readonly waits = new Set<Wakeup>();
  private closing = false;

  constructor(
    private readonly connection: AmqpConnection,
    options: AmqpConsumerOptions,
  ) {
    this.topology = resolveTopology(options.topology);
    this.handle = options.handle;
    this.prefetch = options.prefetch ?? 100;
    this.isPermanent = options.isPermanent ?? isNonRetryableError;
    this.retryBackoff = options.retryBackoff ?? { baseMs: 1000, maxDelayMs: 30_000 };
    this.retryInPlaceMs = options.retryInPlaceMs ?? RETRY_IN_PLACE_MS;
    this.logger = connection.logger.child({
      component: 'amqp-consumer',
      queue: this.topology.queue,
    });
  }

  /** Subscribes now if connected, and again after every reconnect. */
  async start(): Promise<void> {
    if (this.closing || this.channel) return;
    this.channel = this.connection.openChannel({
      name: 'consumer',
      confirm: false,
      setup: (channel) => this.subscribe(channel),
    });
    await this.channel.started;
  }

  get isSubscribed(): boolean {
    return this.subscription !== undefined;
  }

  /**
   * How many messages wait in the dead-letter queue (what the broker gave up on and what was
   * dead-lettered here), as the broker counts them; undefined while not subscribed.
   */
  async countDeadLettered(): Promise<number | undefined> {
    if (!this.subscription || !this.channel) return undefined;
    const { messageCount } = await this.channel.wrapper.checkQueue(this.topology.deadLetterQueue);
    return messageCount;
  }

  /** Stops new deliveries, waits for handlers in flight to settle their messages, then closes. */
  async close(): Promise<void> {
    this.closing = true;
    for (const wait of this.waits) wait.wake();
    const subscription = this.subscription;
    this.subscription = undefined;
    if (subscription) {
      await subscription.channel.cancel(subscription.consumerTag).catch(() => undefined);
    }
    await Promise.all(this.inFlight);
    const channel = this.channel;
    this.channel = undefined;
    // Unacked messages still held (none unless a handler failed to settle) return to the queue.
    await channel?.close();
  }

  private async subscribe(channel: Channel): Promise<void> {
    if (this.closing) return;
    channel.on('close', () => {
      if (this.subscription?.channel === channel) this.subscription = undefined;
    });
    await assertTopology(channel, this.topology);
    await channel.prefetch(this.prefetch);
    const { consumerTag } = await channel.consume(
      this.topology.queue,
      (message) => this.onMessage(channel, message),
      { noAck: false },
    );
    if (this.closing) {
      // close() ran while we subscribed and found no consumer to cancel.
      await channel.cancel(consumerTag).catch(() => undefined);
      return;
    }
    this.subscription = { channel, consumerTag };
    this.logger.info({ prefetch: this.prefetch }, 'AMQP consumer subscribed');
  }

  private onMessage(channel: Channel, message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled us (queue deleted or failed over): declare and subscribe again.
      if (this.closing || this.subscription?.channel !== channel) return;
      this.logger.warn('AMQP consumer cancelled by the broker; resubscribing');
      this.subscription = undefined;
      this.connection.replace('consumer cancelled by the broker', channel);
      return;
    }
    const processed = this.process(channel, message);
    this.inFlight.add(processed);
    void processed.finally(() => this.inFlight.delete(processed));
  }

  private async process(channel: Channel, message: ConsumeMessage): Promise<void> {
    const { properties, fields } = message;
    const messageId = typeof properties.messageId === 'string' ? properties.messageId : undefined;
    const headers: Record<string, unknown> = properties.headers ?? {};
    const count = Number(headers['x-delivery-count'] ?? 0);
    const deliveryCount = Number.isFinite(count) ? count : 0;
    const context = { messageId, deliveryCount, redelivered: fields.redelivered };
    let body: unknown;
    try {
      body = JSON.parse(message.content.toString('utf8'));
    } catch (error) {
      this.logger.warn({ ...context, err: error }, 'message body is not JSON; dead-lettering it');
      this.settle(channel, message, 'dead-letter', context);
      return;
    }
    const received = { messageId, routingKey: fields.routingKey, body, headers };
    const started = Date.now();
    for (let tries = 1; ; tries += 1) {
      try {
        await this.handle({ ...received, redelivered: fields.redelivered, deliveryCount });
        this.settle(channel, message, 'ack', context);
        return;
      } catch (error) {
        if (this.isPermanent(error)) {
          this.logger.warn({ ...context, err: error }, 'permanent failure; dead-lettering message');
          this.settle(channel, message, 'dead-letter', context);
          return;
        }
        const delayMs = retryDelayMs(deliveryCount + tries, this.retryBackoff);
        // Tried here only if the next try falls strictly inside the window: the jitter may pick no
        // wait at all, and within the same millisecond `>` would then retry in place even with a
        // window of 0, an extra call that spends none of the delivery limit.
        if (this.closing || Date.now() - started + delayMs >= this.retryInPlaceMs) {
          this.logger.warn({ ...context, err: error, tries }, 'handler failed; requeueing message');
          this.settle(channel, message, 'requeue', context);
          return;
        }
        this.logger.warn(
          { ...context, err: error, delayMs, tries },
          'handler failed; trying again',
        );
        await this.waitBeforeRetry(delayMs);
      }
    }
  }

  private async waitBeforeRetry(ms: number): Promise<void> {
    if (ms <= 0) return;
    const wait = new Wakeup();
    this.waits.add(wait);
    await wait.sleep(ms);
    this.waits.delete(wait);
  }

  private settle(
    channel: Channel,
    message: ConsumeMessage,
    outcome: Outcome,
    context: Record<string, unknown>,
  ): void {
    try {
      if (outcome === 'ack') channel.ack(message);
      else channel.nack(message, false, outcome === 'requeue');
    } catch (error) {
      // The channel died with the connection: the broker hands the message out again.
      this.logger.warn(
        { ...context, outcome, err: error },
        'could not settle message; it will be redelivered',
      );
    }
  }
}
