import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import type { SourceDetails, SourceStatus } from '../../contracts/admin-api.js';
import type { Logger } from '../../core/logging.js';
import type { CrmClient } from '../crm-client.js';
import type { IntegrationConfig } from '../config.js';
import type { IntegrationMetrics } from '../metrics.js';
import type { RecordFromFeed, RecordPushed } from '../store/inbox.js';
import type { SyncStore } from '../store/sync-store.js';

/**
 * Where every source records the customers it finds (the delivery worker's): a pushed message's
 * customers, deduplicated by message id, or a page of the feed with its cursor's move, in one
 * transaction. Either way the new ones are delivered soon after.
 */
export interface Inbox {
  recordPushed: RecordPushed;
  recordFromFeed: RecordFromFeed;
  /**
   * Waits (at most `maxWaitMs`, or until `signal` aborts) until `customers` new customers could be
   * sent at once: a reader of the feed takes its next page when it can be sent, not before.
   */
  waitForRoom(customers: number, maxWaitMs: number, signal: AbortSignal): Promise<void>;
}

/** What every source is built from (each source file exports a `create…Source(context)`). */
export interface SourceContext {
  config: IntegrationConfig;
  crm: CrmClient;
  store: SyncStore;
  metrics: IntegrationMetrics;
  /** The service's registry, for a source's own metrics (e.g. the broker's dead letters). */
  registry: Registry;
  logger: Logger;
}

/**
 * A source of new customers (the CRM's feed, its webhooks, RabbitMQ…). `SYNC_MODE` picks a list of
 * them (service.ts); `/api/status`, `mip status`, the dashboard and the metric labels show that
 * list, so a new source is one file implementing this and one line there.
 */
export interface Source {
  /**
   * e.g. `poll`, `reconcile`, `webhook`, `amqp`: the `source` of the deliveries it records first,
   * the `source` label of its metrics and its name in the status.
   */
  readonly name: string;
  /** The field of `/api/status` that showed this source before `sources` did; none for new ones. */
  readonly statusField?: 'poll' | 'webhook' | 'amqp';
  /** Routes the source receives on (e.g. the webhook endpoint), registered with the service's. */
  readonly routes?: FastifyPluginAsync;
  /** Starts finding customers and recording them into `inbox`, once the service listens at `url`. */
  start(inbox: Inbox, listening: { url: string }): void;
  /** Stops taking new messages and waits for those in hand to be recorded. */
  stop(): Promise<void>;
  /** The source's own state, as plain fields (shown under its name). */
  details(): Promise<SourceDetails>;
  /** Why the service cannot do its job because of this source (it is then not ready), if so. */
  notReadyReason(): string | undefined;
}

/** A source's entry in `/api/status`. */
export async function readSourceStatus(source: Source): Promise<SourceStatus> {
  const problem = source.notReadyReason();
  return {
    name: source.name,
    ready: problem === undefined,
    problem: problem ?? null,
    details: await source.details(),
  };
}
