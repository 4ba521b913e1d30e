import { AmqpConnectionManagerClass, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ChannelModel } from 'amqplib';
import { retryDelayMs, type RetryPolicy } from '../backoff.js';
import { readUrl, redactUrl, type Env } from '../config.js';
import type { Logger } from '../logging.js';
import { Wakeup } from '../wakeup.js';
import { AmqpUnavailableError } from './errors.js';

export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** `AMQP_URL`, an `amqp://` or `amqps://` URL. Default `amqp://guest:guest@127.0.0.1:5672`. */
export function readAmqpUrl(env: Env): string {
  return readUrl(env, 'AMQP_URL', DEFAULT_AMQP_URL, ['amqp:', 'amqps:']) ?? DEFAULT_AMQP_URL;
}

export type Backoff = Pick<RetryPolicy, 'baseMs' | 'maxDelayMs'>;

/** Declares what a channel needs (and subscribes) on each new channel, after every (re)connect. */
export type AmqpSetup = (channel: Channel) => Promise<void>;

export interface AmqpChannelOptions {
  /** Names the channel in log lines: `publisher`, `consumer`. */
  name: string;
  /** A confirm channel (to publish with confirms) or a plain one (to consume). */
  confirm: boolean;
  setup: AmqpSetup;
}

/** A channel opened again, and set up again, after every reconnect, until closed. */
export interface AmqpChannel {
  /** amqp-connection-manager's channel: publishes with confirms and a timeout. */
  readonly wrapper: ChannelWrapper;
  /** Set up on the current connection and still open. */
  readonly isReady: boolean;
  /** Resolves after the first setup attempt if connected when opened, else at once. */
  readonly started: Promise<void>;
  /** Closes the channel for good. */
  close(): Promise<void>;
}

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

interface ChannelState {
  ready: boolean;
  /** False once its owner closed it. */
  open: boolean;
}

/**
 * One connection to the broker that comes back by itself, through amqp-connection-manager:
 * whenever it drops, it reconnects with exponential backoff and full jitter and sets up every
 * channel again, until `close()`. A channel that dies alone (a refused declaration, a consumer
 * cancelled by the broker) replaces the whole connection, since the library reopens channels only
 * on reconnect. "Connected" means connected with every channel set up.
 */
export class AmqpConnection {
  readonly logger: Logger;
  private readonly url: string;
  private readonly backoff: Backoff;
  private readonly manager: AmqpConnectionManagerClass;
  private readonly channels = new Set<ChannelState>();
  private readonly wakeup = new Wakeup();
  private readonly waiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>();
  /** Connect attempts since the last time connected. */
  private attempts = 0;
  private hasConnected = false;
  private connected = false;
  private closing = false;
  private closed: Promise<void> | undefined;
  private replacing: ChannelModel | undefined;

  constructor(options: AmqpConnectionOptions) {
    this.url = options.url;
    this.logger = options.logger.child({ broker: redactUrl(options.url) });
    this.backoff = options.reconnectBackoff ?? { baseMs: 200, maxDelayMs: 10_000 };
    this.manager = new AmqpConnectionManagerClass(null, {
      // Asked before every connect attempt: it waits out the backoff first. The library's own
      // wait between attempts is fixed, so it is kept negligible.
      findServers: () => this.waitBeforeConnecting(),
      reconnectTimeInSeconds: 0.001,
      // 0 lets the broker choose (60 s by default), as amqplib alone does.
      heartbeatIntervalInSeconds: 0,
      connectionOptions: {
        timeout: options.connectTimeoutMs ?? 10_000,
        clientProperties: { connection_name: options.connectionName ?? 'mip' },
      },
    });
    this.manager.on('connect', () => this.markIfConnected());
    this.manager.on('connectFailed', ({ err }) => {
      if (this.closing) return;
      this.logger.warn(
        { err, attempts: this.attempts },
        'AMQP connect failed; retrying with backoff',
      );
    });
    this.manager.on('disconnect', ({ err }) => {
      this.connected = false;
      for (const channel of this.channels) channel.ready = false;
      if (this.closing) return;
      this.logger.warn({ err }, 'AMQP connection lost; reconnecting');
    });
    this.manager.on('blocked', ({ reason }) => {
      this.logger.warn({ reason }, 'AMQP connection blocked by the broker (resource alarm)');
    });
    this.manager.on('unblocked', () => this.logger.info('AMQP connection unblocked'));
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Starts connecting in the background; a broker that is down is retried, not thrown. */
  start(): void {
    if (this.closing) throw new Error('AmqpConnection is closed');
    // Rejects when the first attempt is refused; the attempts go on regardless.
    this.manager.connect().catch(() => undefined);
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
   * Opens a channel that runs `setup` now if connected, and again on every reconnect. A failing
   * setup is logged and the connection replaced, so it is retried with backoff.
   */
  openChannel(options: AmqpChannelOptions): AmqpChannel {
    if (this.closing) throw new AmqpUnavailableError('AmqpConnection is closed');
    const state: ChannelState = { ready: false, open: true };
    let current: Channel | undefined;
    let attempted: () => void = () => undefined;
    const started = this.manager.isConnected()
      ? new Promise<void>((resolve) => (attempted = resolve))
      : Promise.resolve();
    const wrapper = this.manager.createChannel({
      name: options.name,
      confirm: options.confirm,
      setup: async (channel: Channel) => {
        current = channel;
        state.ready = false;
        channel.on('error', (error: unknown) => {
          this.logger.warn({ err: error }, `AMQP ${options.name} channel error`);
        });
        channel.on('close', () => {
          if (current !== channel) return;
          current = undefined;
          state.ready = false;
          if (state.open) this.replace(`${options.name} channel closed`, channel);
        });
        try {
          await options.setup(channel);
          if (current === channel && state.open) {
            state.ready = true;
            this.markIfConnected();
          }
        } finally {
          attempted();
        }
      },
    });
    // Emitted when a setup fails, or the channel cannot be created or written to.
    wrapper.on('error', (error: unknown) => {
      attempted();
      // A setup cut off by a dropped connection is run again on the next one anyway.
      if (!state.open || this.closing || !this.manager.isConnected()) return;
      this.logger.error({ err: error }, 'AMQP setup failed; reconnecting to retry it');
      this.replace(`${options.name} setup failed`, current);
    });
    this.channels.add(state);
    return {
      wrapper,
      get isReady() {
        return state.ready;
      },
      started,
      close: async () => {
        state.open = false;
        state.ready = false;
        this.channels.delete(state);
        this.markIfConnected();
        await wrapper.close().catch(() => undefined);
      },
    };
  }

  /**
   * Replaces the connection (if `channel` is given, only while it is on the current one), so that
   * every channel is opened and set up again on a fresh connection.
   */
  replace(reason: string, channel?: Channel): void {
    // Deferred: a channel's 'close' fires before its connection's, and closing from inside
    // that event would race the connection's own shutdown.
    setImmediate(() => {
      const model = this.manager.connection;
      if (!model || this.closing || model === this.replacing) return;
      if (channel !== undefined && channel.connection !== model.connection) return;
      this.replacing = model;
      this.logger.warn({ reason }, 'AMQP connection is being replaced');
      model.close().catch(() => undefined);
    });
  }

  /** Stops reconnecting and closes the connection (and so every channel on it). */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    this.wakeup.wake();
    for (const waiter of this.waiters) waiter.reject(new AmqpUnavailableError('closed'));
    this.waiters.clear();
    await this.manager.close();
    this.connected = false;
    this.logger.info('AMQP connection closed');
  }

  private async waitBeforeConnecting(): Promise<string> {
    // After a drop every client of the broker reconnects at once; a jittered first wait spreads
    // them out.
    const step = this.attempts + (this.hasConnected ? 1 : 0);
    if (step > 0) await this.wakeup.sleep(retryDelayMs(step, this.backoff));
    if (this.closing) throw new AmqpUnavailableError('AmqpConnection is closed');
    this.attempts += 1;
    return this.url;
  }

  private markIfConnected(): void {
    if (this.connected || this.closing || !this.manager.isConnected()) return;
    for (const channel of this.channels) if (!channel.ready) return;
    this.connected = true;
    this.logger.info({ attempts: this.attempts }, 'AMQP connected');
    this.attempts = 0;
    this.hasConnected = true;
    for (const waiter of this.waiters) waiter.resolve();
    this.waiters.clear();
  }
}
