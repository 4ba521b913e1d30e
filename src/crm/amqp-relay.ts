import type { Kysely } from 'kysely';
import { Counter, type Registry } from 'prom-client';
import { AmqpConnection, AmqpPublisher, describeAmqpUrl, prefixedTopology } from '../core/amqp.js';
import { retryDelayMs } from '../core/backoff.js';
import type { Logger } from '../core/logging.js';
import { Wakeup } from '../core/wakeup.js';
import type { EventLog } from './events.js';
import type { CrmTables } from './migrations.js';

const CURSOR = 'amqp';
const BATCH = 200;

export interface AmqpRelayOptions {
  db: Kysely<CrmTables>;
  events: EventLog;
  url: string;
  namePrefix: string;
  logger: Logger;
  metrics: Registry;
}

/**
 * Publishes the outbox's events to RabbitMQ in position order, at least once: a batch is published
 * with publisher confirms, and only then does the relay's cursor move past it. A crash between the
 * two republishes the batch; consumers deduplicate on `message-id` (the event id).
 */
export class AmqpRelay {
  private readonly connection: AmqpConnection;
  private readonly publisher: AmqpPublisher;
  private readonly wakeup = new Wakeup();
  private readonly published: Counter;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly options: AmqpRelayOptions) {
    this.connection = new AmqpConnection({
      url: options.url,
      logger: options.logger,
      connectionName: 'crm-relay',
    });
    this.publisher = new AmqpPublisher(this.connection, {
      topology: prefixedTopology(options.namePrefix),
    });
    this.published = new Counter({
      name: 'crm_amqp_published_total',
      help: 'Events published to RabbitMQ and confirmed by the broker.',
      registers: [options.metrics],
    });
  }

  start(): void {
    this.options.logger.info(
      `Publishing events to RabbitMQ at ${describeAmqpUrl(this.options.url)}`,
    );
    this.connection.start();
    this.publisher.start();
    this.running = true;
    this.loop = this.run();
  }

  wake(): void {
    this.wakeup.wake();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wakeup.wake();
    await this.loop;
    await this.publisher.close();
    await this.connection.close();
  }

  private async readCursor(): Promise<number> {
    const row = await this.options.db
      .selectFrom('relay_cursors')
      .select('position')
      .where('name', '=', CURSOR)
      .executeTakeFirst();
    return row?.position ?? 0;
  }

  private async run(): Promise<void> {
    const { db, events, logger } = this.options;
    let failures = 0;
    while (this.running) {
      try {
        const after = await this.readCursor();
        const batch = await events.readAfter(after, BATCH);
        if (batch.length === 0) {
          await this.wakeup.sleep(1_000);
          continue;
        }
        await Promise.all(
          batch.map((event) =>
            this.publisher.publish({
              id: event.id,
              body: event,
              ...(event.traceparent ? { headers: { traceparent: event.traceparent } } : {}),
            }),
          ),
        );
        const position = batch[batch.length - 1]!.position;
        const now = Date.now();
        await db
          .insertInto('relay_cursors')
          .values({ name: CURSOR, position, updated_at: now })
          .onConflict((conflict) =>
            conflict.column('name').doUpdateSet({ position, updated_at: now }),
          )
          .execute();
        this.published.inc(batch.length);
        failures = 0;
      } catch (error) {
        failures += 1;
        const delay = retryDelayMs(failures, { baseMs: 200, maxDelayMs: 10_000 });
        logger.warn(
          `Publishing events to RabbitMQ failed (${(error as Error).message}); retrying in ${delay} ms`,
        );
        await this.wakeup.sleep(delay);
      }
    }
  }
}
