import {
  connect,
  type Channel,
  type ChannelModel,
  type ConfirmChannel,
  type ConsumeMessage,
  type Message,
} from 'amqplib';
import { retryDelayMs, type RetryPolicy } from './backoff.js';
import { readUrl, type Env } from './config.js';
import type { Logger } from './logging.js';

// ---------------------------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------------------------

export const CRM_EVENTS_EXCHANGE = 'crm.events';
export const CUSTOMER_CREATED_ROUTING_KEY = 'customer.created';
export const CRM_EVENTS_DEAD_LETTER_EXCHANGE = 'crm.events.dlx';
export const CUSTOMER_CREATED_QUEUE = 'integration.customer-created';
export const CUSTOMER_CREATED_DEAD_LETTER_QUEUE = 'integration.customer-created.dead';
export const DEFAULT_DELIVERY_LIMIT = 10;
export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** Names and limits of the exchanges and queues; tests pass their own unique names. */
export interface Topology {
  /** Durable topic exchange events are published to. Default `crm.events`. */
  exchange: string;
  /** Routing key published with and bound on. Default `customer.created`. */
  routingKey: string;
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
  queue: CUSTOMER_CREATED_QUEUE,
  deadLetterExchange: CRM_EVENTS_DEAD_LETTER_EXCHANGE,
  deadLetterQueue: CUSTOMER_CREATED_DEAD_LETTER_QUEUE,
  deliveryLimit: DEFAULT_DELIVERY_LIMIT,
});

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
  await channel.bindQueue(topology.queue, topology.exchange, topology.routingKey);
  return topology;
}

/** `AMQP_URL`, an `amqp://` or `amqps://` URL. Default `amqp://guest:guest@127.0.0.1:5672`. */
export function readAmqpUrl(env: Env): string {
  return readUrl(env, 'AMQP_URL', DEFAULT_AMQP_URL, ['amqp:', 'amqps:']) ?? DEFAULT_AMQP_URL;
}

/** The URL without its credentials, fit for a log line. */
export function describeAmqpUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '<invalid AMQP URL>';
  }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** The broker cannot be reached right now: keep the event and try again later. */
export class AmqpUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AmqpUnavailableError';
  }
}

/** The broker did not take responsibility for a message (nack, no confirm, unroutable). */
export class AmqpPublishError extends Error {
  constructor(
    message: string,
    readonly messageId: string,
  ) {
    super(message);
    this.name = 'AmqpPublishError';
  }
}

// ---------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------

type Backoff = Pick<RetryPolicy, 'baseMs' | 'maxDelayMs'>;

/** Runs on every (re)connect; publishers and consumers open their channels here. */
export type AmqpSetup = (model: ChannelModel) => Promise<void>;

export interface AmqpConnectionOptions {
  /** Broker URL, usually from `readAmqpUrl(process.env)`. */
  url: string;
  logger: Logger;
  /** Connection name shown by `rabbitmqctl list_connections client_properties`. Default `mip`. */
  connectionName?: string;
  /** Spacing of reconnect attempts (full jitter). Default `{ baseMs: 200, maxDelayMs: 10_000 }`. */
  reconnectBackoff?: Backoff;
  /** Give up one connect attempt after this many ms. Default 10 000. */
  connectTimeoutMs?: number;
}

/**
 * One connection to the broker that comes back by itself: whenever it drops, it reconnects with
 * exponential backoff and full jitter and runs every setup again, until `close()`.
 */
export class AmqpConnection {
  readonly logger: Logger;
  private readonly url: string;
  private readonly connectionName: string;
  private readonly backoff: Backoff;
  private readonly connectTimeoutMs: number;
  private readonly setups = new Set<AmqpSetup>();
  private model: ChannelModel | undefined;
  private connected = false;
  private connecting = false;
  private closing = false;
  private loopDone: Promise<void> = Promise.resolve();
  private closed: Promise<void> | undefined;
  private wakeSleep: (() => void) | undefined;
  private waiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>();

  constructor(options: AmqpConnectionOptions) {
    this.url = options.url;
    this.logger = options.logger.child({ broker: describeAmqpUrl(options.url) });
    this.connectionName = options.connectionName ?? 'mip';
    this.backoff = options.reconnectBackoff ?? { baseMs: 200, maxDelayMs: 10_000 };
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Starts connecting in the background; a broker that is down is retried, not thrown. */
  start(): void {
    if (this.closing) throw new Error('AmqpConnection is closed');
    this.startConnecting(false);
  }

  /** Resolves once connected and set up; rejects after `timeoutMs` or on `close()`. */
  waitUntilConnected(timeoutMs = 10_000): Promise<void> {
    if (this.connected) return Promise.resolve();
    if (this.closing) return Promise.reject(new AmqpUnavailableError('AmqpConnection is closed'));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new AmqpUnavailableError(`not connected to RabbitMQ within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /**
   * Registers `setup` to run on every connect, and runs it now if connected. A failing setup is
   * logged and the connection replaced, so it is retried with backoff. Returns its remover.
   */
  async addSetup(setup: AmqpSetup): Promise<() => void> {
    this.setups.add(setup);
    const remove = () => {
      this.setups.delete(setup);
    };
    const model = this.model;
    if (this.connected && model) {
      try {
        await setup(model);
      } catch (error) {
        this.logger.error({ err: error }, 'AMQP setup failed; reconnecting to retry it');
        this.reconnect('setup failed', model);
      }
    }
    return remove;
  }

  /**
   * Replaces the connection (if `model` is given, only while it is still the current one), e.g.
   * after a channel died of an error: every setup then runs again on a fresh connection.
   */
  reconnect(reason: string, model?: ChannelModel): void {
    // Deferred: a channel's 'close' fires before its connection's, and closing from inside
    // that event would race the connection's own shutdown.
    setImmediate(() => {
      const current = this.model;
      if (!current || this.closing || (model !== undefined && model !== current)) return;
      this.logger.warn({ reason }, 'AMQP connection is being replaced');
      current.close().catch(() => undefined);
    });
  }

  /** Stops reconnecting and closes the connection (and so every channel on it). */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    this.wakeSleep?.();
    for (const waiter of this.waiters) waiter.reject(new AmqpUnavailableError('closed'));
    this.waiters.clear();
    await this.loopDone;
    const model = this.model;
    this.model = undefined;
    this.connected = false;
    if (model) await model.close().catch(() => undefined);
    this.logger.info('AMQP connection closed');
  }

  private startConnecting(afterDrop: boolean): void {
    if (this.connecting || this.closing) return;
    this.connecting = true;
    this.loopDone = this.connectLoop(afterDrop);
  }

  private async connectLoop(afterDrop: boolean): Promise<void> {
    // After a drop every client of the broker reconnects at once; a jittered first wait spreads
    // them out.
    const firstDelayStep = afterDrop ? 1 : 0;
    let attempts = 0;
    while (!this.closing) {
      const delayStep = firstDelayStep + attempts;
      if (delayStep > 0) await this.sleep(retryDelayMs(delayStep, this.backoff));
      if (this.closing) break;
      attempts += 1;
      let model: ChannelModel | undefined;
      try {
        model = await connect(this.url, {
          timeout: this.connectTimeoutMs,
          clientProperties: { connection_name: this.connectionName },
        });
        const current = model;
        current.on('error', (error: unknown) => {
          this.logger.warn({ err: error }, 'AMQP connection error');
        });
        current.on('close', (error: unknown) => this.onClose(current, error));
        current.on('blocked', (reason: unknown) => {
          this.logger.warn({ reason }, 'AMQP connection blocked by the broker (resource alarm)');
        });
        current.on('unblocked', () => this.logger.info('AMQP connection unblocked'));
        this.model = current;
        if (this.closing) break;
        for (const setup of this.setups) await setup(current);
        // The connection may have dropped while setups ran without touching the broker.
        if (this.model !== current) throw new Error('connection closed during setup');
        if (this.closing) break;
        this.connected = true;
        this.connecting = false;
        this.logger.info({ attempts }, 'AMQP connected');
        for (const waiter of this.waiters) waiter.resolve();
        this.waiters.clear();
        return;
      } catch (error) {
        if (model && this.model === model) {
          this.model = undefined;
          model.close().catch(() => undefined);
        }
        if (this.closing) break;
        this.logger.warn({ err: error, attempts }, 'AMQP connect failed; retrying with backoff');
      }
    }
    this.connecting = false;
  }

  private onClose(model: ChannelModel, error: unknown): void {
    if (model !== this.model) return;
    this.model = undefined;
    this.connected = false;
    if (this.closing) return;
    this.logger.warn({ err: error }, 'AMQP connection lost; reconnecting');
    // A no-op while a connect loop runs: its setups fail or its final check sees the drop.
    this.startConnecting(true);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleep = done;
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Publisher
// ---------------------------------------------------------------------------------------------

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
 */
export class AmqpPublisher {
  private readonly topology: Topology;
  private readonly confirmTimeoutMs: number;
  private readonly logger: Logger;
  private channel: ConfirmChannel | undefined;
  private returned = new Set<string>();
  private readonly pending = new Set<Promise<void>>();
  private removeSetup: (() => void) | undefined;
  private closing = false;

  constructor(
    private readonly connection: AmqpConnection,
    options: AmqpPublisherOptions = {},
  ) {
    this.topology = resolveTopology(options.topology);
    this.confirmTimeoutMs = options.confirmTimeoutMs ?? 10_000;
    this.logger = connection.logger.child({ component: 'amqp-publisher' });
  }

  /** Opens the channel now if connected, and again after every reconnect. */
  async start(): Promise<void> {
    this.removeSetup = await this.connection.addSetup((model) => this.openChannel(model));
  }

  /** Whether a publish could be confirmed right now. */
  get isReady(): boolean {
    return this.channel !== undefined;
  }

  publish(event: OutgoingEvent): Promise<void> {
    const channel = this.channel;
    if (!channel || this.closing) {
      return Promise.reject(
        new AmqpUnavailableError(`cannot publish ${event.id}: not connected to RabbitMQ`),
      );
    }
    const json = JSON.stringify(event.body);
    if (json === undefined) {
      return Promise.reject(new TypeError(`cannot publish ${event.id}: body is not JSON`));
    }
    const routingKey = event.routingKey ?? this.topology.routingKey;
    const returned = this.returned;
    const confirmed = new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(
        () =>
          settle(
            new AmqpPublishError(
              `no confirm for ${event.id} within ${this.confirmTimeoutMs} ms`,
              event.id,
            ),
          ),
        this.confirmTimeoutMs,
      );
      try {
        channel.publish(
          this.topology.exchange,
          routingKey,
          Buffer.from(json),
          {
            persistent: true,
            // An unroutable message is confirmed too, yet lost; mandatory makes the broker
            // return it (before the confirm), so it can be refused here instead.
            mandatory: true,
            contentType: 'application/json',
            contentEncoding: 'utf-8',
            messageId: event.id,
            type: routingKey,
            timestamp: Math.floor(Date.now() / 1000),
            headers: event.headers ?? {},
          },
          (error: unknown) => {
            if (error) {
              const reason = error instanceof Error ? error.message : String(error);
              settle(new AmqpPublishError(`broker refused ${event.id}: ${reason}`, event.id));
            } else if (returned.delete(event.id)) {
              settle(
                new AmqpPublishError(
                  `${event.id} was unroutable: no queue bound to ${this.topology.exchange} ` +
                    `takes ${routingKey}`,
                  event.id,
                ),
              );
            } else {
              settle();
            }
          },
        );
      } catch (error) {
        // The channel closed under us: the message was not sent.
        const reason = error instanceof Error ? error.message : String(error);
        settle(new AmqpUnavailableError(`cannot publish ${event.id}: ${reason}`));
      }
    });
    const tracked = confirmed.catch(() => undefined);
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
    return confirmed;
  }

  /** Waits for outstanding confirms, then closes the channel; later publishes reject. */
  async close(): Promise<void> {
    this.closing = true;
    this.removeSetup?.();
    await Promise.all(this.pending);
    const channel = this.channel;
    this.channel = undefined;
    if (channel) await channel.close().catch(() => undefined);
  }

  private async openChannel(model: ChannelModel): Promise<void> {
    if (this.closing) return;
    const channel = await model.createConfirmChannel();
    const returned = new Set<string>();
    channel.on('error', (error: unknown) => {
      this.logger.warn({ err: error }, 'AMQP publisher channel error');
    });
    channel.on('return', (message: Message) => {
      const id: unknown = message.properties.messageId;
      if (typeof id === 'string') returned.add(id);
    });
    channel.on('close', () => {
      if (this.channel !== channel) return;
      this.channel = undefined;
      if (!this.closing) this.connection.reconnect('publisher channel closed', model);
    });
    // Declaring the queue too, not just the exchange: a topic exchange drops what no queue binds.
    await assertTopology(channel, this.topology);
    this.returned = returned;
    this.channel = channel;
  }
}

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

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
   * Wait before handing a failed message back to the queue, growing with its delivery count, so
   * that an outage downstream does not use up the delivery limit within milliseconds.
   * Default `{ baseMs: 1000, maxDelayMs: 30_000 }`.
   */
  requeueBackoff?: Backoff;
}

type Outcome = 'ack' | 'requeue' | 'dead-letter';

export function isNonRetryableError(error: unknown): boolean {
  return error instanceof Error && error.name === 'NonRetryableError';
}

/**
 * Consumes the queue with manual acks: ack after `handle` resolves, dead-letter malformed JSON
 * and permanent errors, requeue the rest (the delivery limit dead-letters poison messages).
 * Delivery is at least once: `handle` must be idempotent on `messageId`.
 */
export class AmqpConsumer {
  private readonly topology: Topology;
  private readonly handle: AmqpConsumerOptions['handle'];
  private readonly prefetch: number;
  private readonly isPermanent: (error: unknown) => boolean;
  private readonly requeueBackoff: Backoff;
  private readonly logger: Logger;
  private channel: Channel | undefined;
  private consumerTag: string | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly sleepers = new Set<() => void>();
  private removeSetup: (() => void) | undefined;
  private closing = false;

  constructor(
    private readonly connection: AmqpConnection,
    options: AmqpConsumerOptions,
  ) {
    this.topology = resolveTopology(options.topology);
    this.handle = options.handle;
    this.prefetch = options.prefetch ?? 100;
    this.isPermanent = options.isPermanent ?? isNonRetryableError;
    this.requeueBackoff = options.requeueBackoff ?? { baseMs: 1000, maxDelayMs: 30_000 };
    this.logger = connection.logger.child({
      component: 'amqp-consumer',
      queue: this.topology.queue,
    });
  }

  /** Subscribes now if connected, and again after every reconnect. */
  async start(): Promise<void> {
    this.removeSetup = await this.connection.addSetup((model) => this.subscribe(model));
  }

  get isSubscribed(): boolean {
    return this.consumerTag !== undefined;
  }

  /** Stops new deliveries, waits for handlers in flight to settle their messages, then closes. */
  async close(): Promise<void> {
    this.closing = true;
    this.removeSetup?.();
    for (const wake of this.sleepers) wake();
    const channel = this.channel;
    const consumerTag = this.consumerTag;
    this.consumerTag = undefined;
    if (channel && consumerTag) await channel.cancel(consumerTag).catch(() => undefined);
    await Promise.all(this.inFlight);
    this.channel = undefined;
    // Unacked messages still held (none unless a handler failed to settle) return to the queue.
    if (channel) await channel.close().catch(() => undefined);
  }

  private async subscribe(model: ChannelModel): Promise<void> {
    if (this.closing) return;
    const channel = await model.createChannel();
    channel.on('error', (error: unknown) => {
      this.logger.warn({ err: error }, 'AMQP consumer channel error');
    });
    channel.on('close', () => {
      if (this.channel !== channel) return;
      this.channel = undefined;
      this.consumerTag = undefined;
      if (!this.closing) this.connection.reconnect('consumer channel closed', model);
    });
    await assertTopology(channel, this.topology);
    await channel.prefetch(this.prefetch);
    this.channel = channel;
    const { consumerTag } = await channel.consume(
      this.topology.queue,
      (message) => this.onMessage(channel, model, message),
      { noAck: false },
    );
    this.consumerTag = consumerTag;
    if (this.closing) {
      // close() ran while we subscribed and found no consumer to cancel.
      await channel.close().catch(() => undefined);
      return;
    }
    this.logger.info({ prefetch: this.prefetch }, 'AMQP consumer subscribed');
  }

  private onMessage(channel: Channel, model: ChannelModel, message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled us (queue deleted or failed over): declare and subscribe again.
      if (this.closing || this.channel !== channel) return;
      this.logger.warn('AMQP consumer cancelled by the broker; resubscribing');
      this.consumerTag = undefined;
      this.connection.reconnect('consumer cancelled by the broker', model);
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
    try {
      await this.handle({
        messageId,
        routingKey: fields.routingKey,
        body,
        headers,
        redelivered: fields.redelivered,
        deliveryCount,
      });
    } catch (error) {
      if (this.isPermanent(error)) {
        this.logger.warn({ ...context, err: error }, 'permanent failure; dead-lettering message');
        this.settle(channel, message, 'dead-letter', context);
        return;
      }
      const delayMs = this.closing ? 0 : retryDelayMs(deliveryCount + 1, this.requeueBackoff);
      this.logger.warn({ ...context, err: error, delayMs }, 'handler failed; requeueing message');
      await this.sleep(delayMs);
      this.settle(channel, message, 'requeue', context);
      return;
    }
    this.settle(channel, message, 'ack', context);
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

  private sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }
}
