import type { Kysely, Selectable, Transaction } from 'kysely';
import { Counter, type Registry } from 'prom-client';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import { retryDelayMs } from '../core/backoff.js';
import { chunk } from '../core/batches.js';
import type { DialectName } from '../core/db.js';
import type { Logger } from '../core/logging.js';
import { WorkLoop } from '../core/work-loop.js';
import type { CrmConfig } from './config.js';
import type { CustomerCreatedEvent, CustomerCreatedWebhook } from '../contracts/customer-events.js';
import type { EventLog } from './events.js';
import type { CrmTables } from './migrations.js';
import { checkWebhookTarget, lookupPublicOnly } from './webhook-targets.js';

/**
 * Batches in flight at once. Each batch's calls run side by side and its outcomes are written in
 * one transaction; while both batches are busy, due messages gather for the next claim, so the
 * database work per message shrinks as the rate grows instead of capping it.
 */
const BATCHES_IN_FLIGHT = 2;

type MessageRow = Selectable<CrmTables['webhook_messages']>;
type EndpointRow = Selectable<CrmTables['webhook_endpoints']>;
type Db = Kysely<CrmTables>;

export interface WebhookSenderOptions {
  db: Db;
  dialect: DialectName;
  events: EventLog;
  config: CrmConfig;
  logger: Logger;
  metrics: Registry;
}

/** The Standard Webhooks body: the event's type, when it happened, and its data. */
export function webhookBody(event: CustomerCreatedEvent): string {
  const payload: CustomerCreatedWebhook = {
    type: event.type,
    timestamp: event.occurred_at,
    data: event.data,
  };
  return JSON.stringify(payload);
}

/** `webhook-signature`: one `v1,<base64>` per valid secret, space-separated (key rotation). */
export function signWebhook(secrets: string[], id: string, timestamp: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(id, timestamp, body)).join(' ');
}

/** What one call to an endpoint gave. */
interface CallResult {
  message: MessageRow;
  endpoint: EndpointRow;
  event: CustomerCreatedEvent;
  status: number | null;
  /** null when the endpoint answered 2xx in time. */
  error: string | null;
  durationMs: number;
}

type MessageChanges = Partial<
  Pick<MessageRow, 'state' | 'attempts' | 'last_status' | 'last_error' | 'next_attempt_at'>
>;

/**
 * Sends the outbox's webhook messages: each event to each endpoint, signed as the Standard Webhooks
 * specification says, until an endpoint answers 2xx within the timeout. Failures are retried with
 * exponential backoff and full jitter; every attempt is recorded. An endpoint is disabled when it
 * answers 410 Gone, or when every call to it has failed for `webhookDisableAfterMs`.
 */
export class WebhookSender {
  private readonly loop: WorkLoop<MessageRow[]>;
  /** Keep-alive connections to the endpoints, shared by every send (undici's request, no streams). */
  private readonly connections: Agent;
  private closingConnections: Promise<void> | undefined;
  private readonly attempts: Counter;

  constructor(private readonly options: WebhookSenderOptions) {
    this.connections = new Agent({
      keepAliveTimeout: 10_000,
      connections: 64,
      // The addresses connected to are checked too, not only those the URL resolved to earlier.
      ...(options.config.allowPrivateWebhookTargets
        ? {}
        : { connect: { lookup: lookupPublicOnly } }),
    });
    this.attempts = new Counter({
      name: 'crm_webhook_attempts_total',
      help: 'Webhook calls by outcome: success, failure, gone (410 Gone: endpoint disabled).',
      labelNames: ['outcome'],
      registers: [options.metrics],
    });
    const batchSize = Math.max(1, Math.ceil(options.config.webhookConcurrency / BATCHES_IN_FLIGHT));
    this.loop = new WorkLoop({
      name: 'webhook messages',
      concurrency: BATCHES_IN_FLIGHT,
      claim: async (batches) => chunk(await this.claimDue(batches * batchSize), batchSize),
      handle: (messages) => this.sendBatch(messages),
      logger: options.logger,
    });
  }

  start(): void {
    this.loop.start();
  }

  wake(): void {
    this.loop.wake();
  }

  /** Stops sending and closes the connections; safe to call more than once. */
  async stop(): Promise<void> {
    await this.loop.stop();
    this.closingConnections ??= this.connections.close();
    await this.closingConnections;
  }

  private async claimDue(limit: number, now = Date.now()): Promise<MessageRow[]> {
    // Outlives one call; a crashed sender's claims are taken over this long after it died.
    const lockMs = this.options.config.webhookTimeoutMs + 5_000;
    return this.options.db
      .updateTable('webhook_messages')
      .set({ locked_until: now + lockMs })
      .where('seq', 'in', (eb) => {
        let due = eb
          .selectFrom('webhook_messages')
          .select('seq')
          .where('state', '=', 'pending')
          .where('next_attempt_at', '<=', now)
          .where((w) => w.or([w('locked_until', 'is', null), w('locked_until', '<', now)]))
          .orderBy('next_attempt_at')
          .orderBy('seq')
          .limit(limit);
        if (this.options.dialect === 'postgres') due = due.forUpdate().skipLocked();
        return due;
      })
      .returningAll()
      .execute();
  }

  /** Calls the endpoints for a claimed batch side by side, then records every outcome at once. */
  private async sendBatch(messages: MessageRow[]): Promise<void> {
    const { db, events } = this.options;
    const now = Date.now();
    const endpointIds = [...new Set(messages.map((message) => message.endpoint_id))];
    const endpoints = new Map(
      (
        await db
          .selectFrom('webhook_endpoints')
          .selectAll()
          .where('id', 'in', endpointIds)
          .execute()
      ).map((endpoint) => [endpoint.id, endpoint]),
    );
    const eventsById = await events.getMany([...new Set(messages.map((m) => m.event_id))]);
    const cancelled: MessageRow[] = [];
    const calls: Promise<CallResult>[] = [];
    for (const message of messages) {
      const endpoint = endpoints.get(message.endpoint_id);
      const event = eventsById.get(message.event_id);
      if (!endpoint || endpoint.disabled_at !== null || !event) cancelled.push(message);
      else calls.push(this.call(message, endpoint, event, now));
    }
    const results = await Promise.all(calls);
    const logs: (() => void)[] = [];
    await db.transaction().execute(async (trx) => {
      for (const message of cancelled) {
        await this.finish(trx, message, {
          state: 'cancelled',
          last_error: 'endpoint deleted or disabled',
        });
      }
      if (results.length > 0) {
        await trx
          .insertInto('webhook_attempts')
          .values(
            results.map((result) => ({
              endpoint_id: result.endpoint.id,
              event_id: result.event.id,
              attempted_at: now,
              status: result.status,
              error: result.error,
              duration_ms: result.durationMs,
            })),
          )
          .execute();
      }
      for (const result of results) logs.push(await this.record(trx, result, now));
      for (const endpoint of endpoints.values()) {
        const own = results.filter((result) => result.endpoint.id === endpoint.id);
        if (own.length > 0) logs.push(...(await this.updateEndpoint(trx, endpoint, own, now)));
      }
    });
    for (const log of logs) log();
  }

  /** One signed POST of `event` to `endpoint`; never throws (a failure is the result). */
  private async call(
    message: MessageRow,
    endpoint: EndpointRow,
    event: CustomerCreatedEvent,
    now: number,
  ): Promise<CallResult> {
    const { config } = this.options;
    const secrets = [endpoint.secret];
    if (endpoint.previous_secret && (endpoint.previous_secret_expires_at ?? 0) > now) {
      secrets.push(endpoint.previous_secret);
    }
    const body = webhookBody(event);
    const started = performance.now();
    let status: number | null = null;
    let error: string | null = null;
    try {
      await checkWebhookTarget(endpoint.url, { allowPrivate: config.allowPrivateWebhookTargets });
      // No redirect is followed (undici's default): it could lead to a refused address.
      const response = await request(endpoint.url, {
        method: 'POST',
        dispatcher: this.connections,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'mini-integration-platform-crm',
          'webhook-id': event.id,
          'webhook-timestamp': String(Math.floor(now / 1000)),
          'webhook-signature': signWebhook(secrets, event.id, new Date(now), body),
          ...(event.traceparent ? { traceparent: event.traceparent } : {}),
        },
        body,
        signal: AbortSignal.timeout(config.webhookTimeoutMs),
      });
      status = response.statusCode;
      await response.body.dump();
      if (status < 200 || status >= 300) error = `HTTP ${status}`;
    } catch (caught) {
      const failure = caught as { name?: string; code?: string; cause?: { code?: string } };
      error =
        failure.name === 'TimeoutError'
          ? `no answer within ${config.webhookTimeoutMs} ms`
          : (failure.code ?? failure.cause?.code ?? (caught as Error).message);
    }
    return {
      message,
      endpoint,
      event,
      status,
      error,
      durationMs: Math.round(performance.now() - started),
    };
  }

  /** Writes one message's next state after its call; answers its log line, for after the commit. */
  private async record(
    trx: Transaction<CrmTables>,
    { message, endpoint, event, status, error, durationMs }: CallResult,
    now: number,
  ): Promise<() => void> {
    const { config, logger } = this.options;
    const log = logger.child({
      endpoint_id: endpoint.id,
      event_id: event.id,
      customer_id: event.data.id,
    });
    const attempts = message.attempts + 1;
    if (error === null) {
      this.attempts.inc({ outcome: 'success' });
      await this.finish(trx, message, { state: 'succeeded', attempts, last_status: status });
      return () => log.debug(`Delivered ${event.type} to ${endpoint.url} in ${durationMs} ms`);
    }
    if (status === 410) {
      this.attempts.inc({ outcome: 'gone' });
      await this.finish(trx, message, {
        state: 'failed',
        attempts,
        last_status: status,
        last_error: error,
      });
      return () => {};
    }
    this.attempts.inc({ outcome: 'failure' });
    if (attempts >= config.webhookMaxAttempts) {
      await this.finish(trx, message, {
        state: 'failed',
        attempts,
        last_status: status,
        last_error: error,
      });
      return () =>
        log.error(
          `Gave up sending event ${event.id} to ${endpoint.url} after ${attempts} attempts: ${error}`,
        );
    }
    const delay = retryDelayMs(attempts, {
      baseMs: config.webhookRetryBaseMs,
      maxDelayMs: config.webhookRetryMaxDelayMs,
    });
    await this.finish(trx, message, {
      state: 'pending',
      attempts,
      last_status: status,
      last_error: error,
      next_attempt_at: now + delay,
    });
    return () =>
      log.warn(
        `Webhook to ${endpoint.url} failed (${error}); attempt ${attempts}, retrying in ${delay} ms`,
      );
  }

  /**
   * An endpoint's health after this batch's calls to it: any 2xx ends a run of failures; a 410, or
   * failures lasting `webhookDisableAfterMs`, disable it. Answers the log lines to write.
   */
  private async updateEndpoint(
    trx: Transaction<CrmTables>,
    endpoint: EndpointRow,
    results: CallResult[],
    now: number,
  ): Promise<(() => void)[]> {
    const { config, logger } = this.options;
    if (results.some((result) => result.status === 410)) {
      await this.disable(trx, endpoint.id, 'the endpoint answered 410 Gone', now);
      return [() => logger.warn(`Webhook endpoint ${endpoint.url} answered 410 Gone: disabled`)];
    }
    if (results.some((result) => result.error === null)) {
      if (endpoint.failing_since !== null) {
        await trx
          .updateTable('webhook_endpoints')
          .set({ failing_since: null })
          .where('id', '=', endpoint.id)
          .execute();
      }
      return [];
    }
    const failingSince = endpoint.failing_since ?? now;
    if (endpoint.failing_since === null) {
      await trx
        .updateTable('webhook_endpoints')
        .set({ failing_since: now })
        .where('id', '=', endpoint.id)
        .execute();
    }
    if (now - failingSince < config.webhookDisableAfterMs) return [];
    const last = results[results.length - 1]!.error;
    await this.disable(
      trx,
      endpoint.id,
      `every call failed for ${Math.round((now - failingSince) / 60_000)} min; last: ${last}`,
      now,
    );
    return [
      () =>
        logger.warn(
          `Webhook endpoint ${endpoint.url} has failed since ${new Date(failingSince).toISOString()}: disabled`,
        ),
    ];
  }

  private async finish(
    trx: Transaction<CrmTables>,
    message: MessageRow,
    changes: MessageChanges,
  ): Promise<void> {
    await trx
      .updateTable('webhook_messages')
      .set({ ...changes, locked_until: null, updated_at: Date.now() })
      .where('seq', '=', message.seq)
      .execute();
  }

  private async disable(
    trx: Transaction<CrmTables>,
    endpointId: string,
    reason: string,
    now: number,
  ): Promise<void> {
    await trx
      .updateTable('webhook_endpoints')
      .set({ disabled_at: now, disabled_reason: reason })
      .where('id', '=', endpointId)
      .where('disabled_at', 'is', null)
      .execute();
    await trx
      .updateTable('webhook_messages')
      .set({ state: 'cancelled', last_error: `endpoint disabled: ${reason}`, updated_at: now })
      .where('endpoint_id', '=', endpointId)
      .where('state', '=', 'pending')
      .where('locked_until', 'is', null)
      .execute();
  }
}
