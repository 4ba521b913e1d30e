import type { Kysely } from 'kysely';
import { Counter, type Registry } from 'prom-client';
import { AmqpConnection } from '../core/amqp/connection.js';
import { AmqpPublisher } from '../core/amqp/publisher.js';
import { prefixedTopology } from '../core/amqp/topology.js';
import { retryDelayMs } from '../core/backoff.js';
import { redactUrl } from '../core/config.js';
import type { Logger } from '../core/logging.js';
import { RepeatingTask, type NextStep } from '../core/repeating-task.js';
import type { EventLog } from './events.js';
import type { CrmTables } from './migrations.js';

const CURSOR = 'amqp';
const BATCH = 200;
/** How long the relay lease lasts unless renewed; a crashed relay is taken over after it. */
const LEASE_MS = 10_000;

export interface AmqpRelayOptions {
  db: Kysely<CrmTables>;
  events: EventLog;
  url: string;
  namePrefix: string;
  /** Names this CRM process in the relay lease, e.g. `<host>-<pid>`. */
  instanceId: string;
  logger: Logger;
  metrics: Registry;
}

/**
 * Publishes the outbox's events to RabbitMQ in position order, at least once: a batch is published
 * with publisher confirms, and only then does the relay's cursor move past it. A crash between the
 * two republishes the batch; consumers deduplicate on `message-id` (the event id). Of several CRM
 * processes on one database, the one holding the relay's lease publishes; the others wait.
 */
export class AmqpRelay {
  private readonly connection: AmqpConnection;
  private readonly publisher: AmqpPublisher;
  private readonly task = new RepeatingTask(() => this.step());
  private readonly published: Counter;
  private failures = 0;
  /** Until when this process holds the relay's lease, and the cursor it moved last; unknown: none. */
  private held: { until: number; position: number } | undefined;

  constructor(private readonly options: AmqpRelayOptions) {
    this.connection = new AmqpConnection({
      url: options.url,
      logger: options.logger,
      // Named like its exchanges, so apps sharing a broker can tell their connections apart.
      connectionName: `${options.namePrefix}crm-relay`,
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
    this.options.logger.info(`Publishing events to RabbitMQ at ${redactUrl(this.options.url)}`);
    this.connection.start();
    this.publisher.start();
    this.task.start();
  }

  wake(): void {
    this.task.wake();
  }

  async stop(): Promise<void> {
    await this.task.stop();
    this.held = undefined;
    // Hands the lease on at once rather than after it runs out.
    await this.options.db
      .updateTable('relay_cursors')
      .set({ holder: null, lease_until: null })
      .where('name', '=', CURSOR)
      .where('holder', '=', this.options.instanceId)
      .execute()
      .catch(() => {});
    await this.publisher.close();
    await this.connection.close();
  }

  /**
   * Takes or renews the lease; answers the cursor when this process holds it, else undefined
   * (another CRM process relays). While more than half the lease is left, nobody else can take it
   * and only its holder moves the cursor: both are known without asking the database (at push
   * rates that saved two writes per batch).
   */
  private async leaseCursor(now = Date.now()): Promise<number | undefined> {
    if (this.held && now < this.held.until - LEASE_MS / 2) return this.held.position;
    const { db, instanceId } = this.options;
    await db
      .insertInto('relay_cursors')
      .values({ name: CURSOR, position: 0, updated_at: now })
      .onConflict((conflict) => conflict.column('name').doNothing())
      .execute();
    const row = await db
      .updateTable('relay_cursors')
      .set({ holder: instanceId, lease_until: now + LEASE_MS })
      .where('name', '=', CURSOR)
      .where((w) =>
        w.or([w('holder', '=', instanceId), w('holder', 'is', null), w('lease_until', '<', now)]),
      )
      .returning('position')
      .executeTakeFirst();
    this.held = row ? { until: now + LEASE_MS, position: row.position } : undefined;
    return row?.position;
  }

  /** Publishes the next batch; answers how long to wait before looking again. */
  private async step(): Promise<NextStep> {
    const { db, events, logger } = this.options;
    try {
      const after = await this.leaseCursor();
      if (after === undefined) return LEASE_MS / 3;
      const batch = await events.readAfter(after, BATCH);
      if (batch.length === 0) return 1_000;
      await Promise.all(
        batch.map((event) =>
          this.publisher.publish({
            id: event.id,
            // customer.created, customer.updated: a consumer binds the types it takes.
            routingKey: event.type,
            body: event,
            ...(event.traceparent ? { headers: { traceparent: event.traceparent } } : {}),
          }),
        ),
      );
      const position = batch[batch.length - 1]!.position;
      const now = Date.now();
      // Only while still the holder: a relay that lost its lease meanwhile moves nothing.
      const moved = await db
        .updateTable('relay_cursors')
        .set({ position, updated_at: now })
        .where('name', '=', CURSOR)
        .where('holder', '=', this.options.instanceId)
        .executeTakeFirst();
      if (this.held && moved.numUpdatedRows > 0n) this.held.position = position;
      else this.held = undefined;
      this.published.inc(batch.length);
      this.failures = 0;
      return 0;
    } catch (error) {
      // Ask the database again next time: the lease or the cursor may have moved meanwhile.
      this.held = undefined;
      this.failures += 1;
      const delay = retryDelayMs(this.failures, { baseMs: 200, maxDelayMs: 10_000 });
      logger.warn(
        `Publishing events to RabbitMQ failed (${(error as Error).message}); retrying in ${delay} ms`,
      );
      return delay;
    }
  }
}
