import type { Kysely, Selectable } from 'kysely';
import { retryDelayMs } from '../../core/backoff.js';
import { redactUrl } from '../../core/config.js';
import type { DialectName } from '../../core/db.js';
import type { Logger } from '../../core/logging.js';
import { SignedWebhookCaller, type CallOutcome } from '../../core/webhooks/signed-call.js';
import type { WebhookTargetPolicy } from '../../core/webhooks/targets.js';
import { claimDueOutboxRows } from '../../core/outbox-claims.js';
import { WorkLoop } from '../../core/work-loop.js';
import type { IntegrationTables } from '../migrations.js';

type OutboxRow = Selectable<IntegrationTables['alert_outbox']>;

/** Alert calls in flight at once: alerts are few, and one slow endpoint must not hold up others. */
const CONCURRENCY = 4;

/** The longest wait between two attempts at one alert, in ms. */
const RETRY_MAX_DELAY_MS = 300_000;

export interface AlertSenderOptions {
  db: Kysely<IntegrationTables>;
  dialect: DialectName;
  /** Where calls may go besides the public internet. */
  targets: WebhookTargetPolicy;
  /** Only a 2xx within this counts, in ms. */
  timeoutMs: number;
  /** First retry delay ceiling, doubled per attempt (full jitter), in ms. */
  retryBaseMs: number;
  /** An alert not delivered this long after it was raised is given up, in ms. */
  giveUpAfterMs: number;
  /** This instance's name on its claims. */
  instanceId: string;
  /** Counts each call by alert type and outcome (`sent`, `retry`, `failed`). */
  onOutcome: (type: string, outcome: 'sent' | 'retry' | 'failed') => void;
  logger: Logger;
}

/**
 * Sends the alert outbox: each alert to each endpoint, signed per Standard Webhooks with the
 * endpoint's secret, until it answers 2xx within the timeout. Failures are retried with backoff
 * and full jitter until `giveUpAfterMs` after the alert was raised. A row is claimed by one
 * instance at a time; a crashed instance's claims are taken over when they lapse, so an alert
 * committed to the outbox is sent even if the process that raised it dies (receivers deduplicate
 * on `webhook-id`).
 */
export class AlertSender {
  private readonly outboxLoop: WorkLoop<OutboxRow>;
  private readonly alertCaller: SignedWebhookCaller;

  constructor(private readonly options: AlertSenderOptions) {
    this.alertCaller = new SignedWebhookCaller({
      targets: options.targets,
      timeoutMs: options.timeoutMs,
      userAgent: 'mini-integration-platform-integration',
    });
    this.outboxLoop = new WorkLoop({
      name: 'alerts',
      concurrency: CONCURRENCY,
      claim: (limit) => this.claimDue(limit),
      handle: (row, abandoned) => this.send(row, abandoned),
      logger: options.logger,
    });
  }

  start(): void {
    this.outboxLoop.start();
  }

  /** Looks for due alerts now rather than at the next idle tick. */
  wake(): void {
    this.outboxLoop.wake();
  }

  /** Stops sending; calls still in flight after `abandonAfterMs` are released unrecorded. */
  async stop(abandonAfterMs?: number): Promise<void> {
    await this.outboxLoop.stop(abandonAfterMs);
    await this.alertCaller.close();
  }

  private claimDue(limit: number, now = Date.now()): Promise<OutboxRow[]> {
    const { db, dialect, instanceId: holder, timeoutMs } = this.options;
    // Outlives one call; a crashed sender's claims are taken over this long after it died.
    const lockedUntil = now + timeoutMs + 5_000;
    return claimDueOutboxRows(db, dialect, 'alert_outbox', { limit, lockedUntil, holder, now });
  }

  private async send(row: OutboxRow, abandoned: AbortSignal): Promise<void> {
    const { db } = this.options;
    const endpoint = await db
      .selectFrom('alert_endpoints')
      .selectAll()
      .where('id', '=', row.endpoint_id)
      .executeTakeFirst();
    const now = Date.now();
    if (!endpoint) {
      await this.settle(row, { state: 'cancelled', last_error: 'endpoint deleted' }, now);
      return;
    }
    const message = {
      url: endpoint.url,
      id: row.alert_id,
      body: row.body,
      secrets: [endpoint.secret],
    };
    const outcome = await this.alertCaller.call(message, now, abandoned);
    if (abandoned.aborted) {
      await this.settle(row, {}, now);
      return;
    }
    await this.record(row, endpoint.url, outcome, Date.now());
  }

  /** Writes what a call gave: sent, due again after a backoff, or given up. */
  private async record(row: OutboxRow, url: string, outcome: CallOutcome, now: number) {
    const { logger, onOutcome, retryBaseMs, giveUpAfterMs } = this.options;
    const attempts = row.attempts + 1;
    const last = { attempts, last_status: outcome.status, last_error: outcome.error };
    const shown = redactUrl(url, { everyValue: true });
    if (outcome.error === null) {
      onOutcome(row.type, 'sent');
      await this.settle(row, { ...last, state: 'sent', sent_at: now }, now);
      logger.info(`Alert ${row.type} (${row.alert_id}) sent to ${shown}`);
      return;
    }
    const delay = retryDelayMs(attempts, { baseMs: retryBaseMs, maxDelayMs: RETRY_MAX_DELAY_MS });
    if (now + delay - row.created_at > giveUpAfterMs) {
      onOutcome(row.type, 'failed');
      await this.settle(row, { ...last, state: 'failed' }, now);
      logger.error(
        `Gave up sending alert ${row.type} (${row.alert_id}) to ${shown} after ${attempts} attempts: ${outcome.error}`,
      );
      return;
    }
    onOutcome(row.type, 'retry');
    await this.settle(row, { ...last, next_attempt_at: now + delay }, now);
    logger.warn(
      `Alert ${row.type} to ${shown} failed (${outcome.error}); attempt ${attempts}, retrying in ${delay} ms`,
    );
  }

  /** Writes `changes` and releases the claim, only while this instance still holds it. */
  private async settle(
    row: OutboxRow,
    changes: Partial<
      Pick<
        OutboxRow,
        'state' | 'attempts' | 'last_status' | 'last_error' | 'next_attempt_at' | 'sent_at'
      >
    >,
    now: number,
  ): Promise<void> {
    await this.options.db
      .updateTable('alert_outbox')
      .set({ ...changes, locked_by: null, locked_until: null, updated_at: now })
      .where('seq', '=', row.seq)
      .where('locked_by', '=', this.options.instanceId)
      .where('locked_until', '=', row.locked_until)
      .execute();
  }
}
