import type { Kysely, Selectable } from 'kysely';
import { Counter, type Registry } from 'prom-client';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import { retryDelayMs } from '../core/backoff.js';
import type { DialectName } from '../core/db.js';
import type { Logger } from '../core/logging.js';
import { WorkLoop } from '../core/work-loop.js';
import type { CrmConfig } from './config.js';
import type { EventLog } from './events.js';
import type { CrmTables } from './migrations.js';
import { checkWebhookTarget } from './webhook-targets.js';

/** Keep-alive connections to the endpoints, shared by every send (undici's request, no streams). */
const webhookConnections = new Agent({ keepAliveTimeout: 10_000, connections: 64 });

type MessageRow = Selectable<CrmTables['webhook_messages']>;
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
export function webhookBody(event: { type: string; occurred_at: string; data: unknown }): string {
  return JSON.stringify({ type: event.type, timestamp: event.occurred_at, data: event.data });
}

/** `webhook-signature`: one `v1,<base64>` per valid secret, space-separated (key rotation). */
export function signWebhook(secrets: string[], id: string, timestamp: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(id, timestamp, body)).join(' ');
}

/**
 * Sends the outbox's webhook messages: each event to each endpoint, signed as the Standard Webhooks
 * specification says, until an endpoint answers 2xx within the timeout. Failures are retried with
 * exponential backoff and full jitter; every attempt is recorded. An endpoint is disabled when it
 * answers 410 Gone, or when every call to it has failed for `webhookDisableAfterMs`.
 */
export class WebhookSender {
  private readonly loop: WorkLoop<MessageRow>;
  private readonly attempts: Counter;

  constructor(private readonly options: WebhookSenderOptions) {
    this.attempts = new Counter({
      name: 'crm_webhook_attempts_total',
      help: 'Webhook calls by outcome: success, failure, gone (410 Gone: endpoint disabled).',
      labelNames: ['outcome'],
      registers: [options.metrics],
    });
    this.loop = new WorkLoop({
      name: 'webhook messages',
      concurrency: options.config.webhookConcurrency,
      claim: (limit) => this.claimDue(limit),
      handle: (message) => this.send(message),
      logger: options.logger,
    });
  }

  start(): void {
    this.loop.start();
  }

  wake(): void {
    this.loop.wake();
  }

  stop(): Promise<void> {
    return this.loop.stop();
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

  private async send(message: MessageRow): Promise<void> {
    const { db, events, config, logger } = this.options;
    const now = Date.now();
    const endpoint = await db
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('id', '=', message.endpoint_id)
      .executeTakeFirst();
    const event = await events.get(message.event_id);
    if (!endpoint || endpoint.disabled_at !== null || !event) {
      await this.finish(message, {
        state: 'cancelled',
        last_error: 'endpoint deleted or disabled',
      });
      return;
    }
    const log = logger.child({
      endpoint_id: endpoint.id,
      event_id: event.id,
      customer_id: event.data.id,
    });
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
        dispatcher: webhookConnections,
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
    const durationMs = Math.round(performance.now() - started);
    await db
      .insertInto('webhook_attempts')
      .values({
        endpoint_id: endpoint.id,
        event_id: event.id,
        attempted_at: now,
        status,
        error,
        duration_ms: durationMs,
      })
      .execute();

    if (error === null) {
      this.attempts.inc({ outcome: 'success' });
      await this.finish(message, {
        state: 'succeeded',
        attempts: message.attempts + 1,
        last_status: status,
      });
      if (endpoint.failing_since !== null) {
        await db
          .updateTable('webhook_endpoints')
          .set({ failing_since: null })
          .where('id', '=', endpoint.id)
          .execute();
      }
      log.debug(`Delivered ${event.type} to ${endpoint.url} in ${durationMs} ms`);
      return;
    }

    const attempts = message.attempts + 1;
    if (status === 410) {
      this.attempts.inc({ outcome: 'gone' });
      await this.disable(endpoint.id, `the endpoint answered 410 Gone`, now);
      await this.finish(message, {
        state: 'failed',
        attempts,
        last_status: status,
        last_error: error,
      });
      log.warn(`Webhook endpoint ${endpoint.url} answered 410 Gone: disabled`);
      return;
    }
    this.attempts.inc({ outcome: 'failure' });
    const failingSince = endpoint.failing_since ?? now;
    if (endpoint.failing_since === null) {
      await db
        .updateTable('webhook_endpoints')
        .set({ failing_since: now })
        .where('id', '=', endpoint.id)
        .execute();
    }
    if (now - failingSince >= config.webhookDisableAfterMs) {
      await this.disable(
        endpoint.id,
        `every call failed for ${Math.round((now - failingSince) / 60_000)} min; last: ${error}`,
        now,
      );
      log.warn(
        `Webhook endpoint ${endpoint.url} has failed since ${new Date(failingSince).toISOString()}: disabled`,
      );
    }
    if (attempts >= config.webhookMaxAttempts) {
      await this.finish(message, {
        state: 'failed',
        attempts,
        last_status: status,
        last_error: error,
      });
      log.error(
        `Gave up sending event ${event.id} to ${endpoint.url} after ${attempts} attempts: ${error}`,
      );
      return;
    }
    const delay = retryDelayMs(attempts, {
      baseMs: config.webhookRetryBaseMs,
      maxDelayMs: config.webhookRetryMaxDelayMs,
    });
    await this.finish(message, {
      state: 'pending',
      attempts,
      last_status: status,
      last_error: error,
      next_attempt_at: now + delay,
    });
    log.warn(
      `Webhook to ${endpoint.url} failed (${error}); attempt ${attempts}, retrying in ${delay} ms`,
    );
  }

  private async finish(
    message: MessageRow,
    changes: Partial<
      Pick<MessageRow, 'state' | 'attempts' | 'last_status' | 'last_error' | 'next_attempt_at'>
    >,
  ): Promise<void> {
    await this.options.db
      .updateTable('webhook_messages')
      .set({ ...changes, locked_until: null, updated_at: Date.now() })
      .where('seq', '=', message.seq)
      .execute();
  }

  private async disable(endpointId: string, reason: string, now: number): Promise<void> {
    const { db } = this.options;
    await db.transaction().execute(async (trx) => {
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
    });
  }
}
