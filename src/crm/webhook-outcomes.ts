import type { Selectable, Transaction } from 'kysely';
import type { Counter } from 'prom-client';
import { retryDelayMs } from '../core/backoff.js';
import { redactUrl } from '../core/config.js';
import type { Logger } from '../core/logging.js';
import type { CallOutcome } from '../core/webhooks/signed-call.js';
import type { CustomerEvent } from '../contracts/customer-events.js';
import type { CrmConfig } from './config.js';
import type { CrmTables } from './migrations.js';
import type { WebhookMessageRow as MessageRow } from './webhook-hand-off.js';

type EndpointRow = Selectable<CrmTables['webhook_endpoints']>;

/** The endpoint's URL for logs: a token in its query or user info is not written out. */
export const shownUrl = (endpoint: EndpointRow) => redactUrl(endpoint.url, { everyValue: true });

/** What one call to an endpoint gave, with what it was about. */
export interface CallResult extends CallOutcome {
  message: MessageRow;
  endpoint: EndpointRow;
  event: CustomerEvent;
}

type MessageChanges = Partial<
  Pick<MessageRow, 'state' | 'attempts' | 'last_status' | 'last_error' | 'next_attempt_at'>
>;

/**
 * What the webhook sender writes after a batch's calls, in the batch's transaction: each message's
 * next state (sent, retried later, given up on, cancelled) and each endpoint's health.
 */
export class WebhookOutcomes {
  constructor(
    private readonly options: { config: CrmConfig; logger: Logger },
    /** Webhook calls by outcome. */
    private readonly attempts: Counter,
  ) {}

  /**
   * Marks the messages whose call succeeded, in one statement per answer status (most batches
   * have one), and answers their log lines. One statement per message was a fifth of the CRM's
   * statements at push rates.
   */
  async recordSuccesses(
    trx: Transaction<CrmTables>,
    results: CallResult[],
  ): Promise<(() => void)[]> {
    if (results.length === 0) return [];
    this.attempts.inc({ outcome: 'success' }, results.length);
    const byStatus = new Map<number | null, number[]>();
    for (const { message, status } of results) {
      const seqs = byStatus.get(status);
      if (seqs) seqs.push(message.seq);
      else byStatus.set(status, [message.seq]);
    }
    for (const [status, seqs] of byStatus) {
      await trx
        .updateTable('webhook_messages')
        .set((eb) => ({
          state: 'succeeded',
          attempts: eb('attempts', '+', 1),
          last_status: status,
          locked_until: null,
          updated_at: Date.now(),
        }))
        .where('seq', 'in', seqs)
        .execute();
    }
    const { logger } = this.options;
    if (!logger.isLevelEnabled('debug')) return [];
    return results.map(
      ({ endpoint, event, durationMs }) =>
        () =>
          logger.debug(
            { endpoint_id: endpoint.id, event_id: event.id, customer_id: event.data.id },
            `Delivered ${event.type} to ${shownUrl(endpoint)} in ${durationMs} ms`,
          ),
    );
  }

  /** Writes a failed call's next state; answers its log line, for after the commit. */
  async record(
    trx: Transaction<CrmTables>,
    { message, endpoint, event, status, error }: CallResult,
    now: number,
  ): Promise<() => void> {
    const { config, logger } = this.options;
    const log = logger.child({
      endpoint_id: endpoint.id,
      event_id: event.id,
      customer_id: event.data.id,
    });
    const url = shownUrl(endpoint);
    const attempts = message.attempts + 1;
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
          `Gave up sending event ${event.id} to ${url} after ${attempts} attempts: ${error}`,
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
      log.warn(`Webhook to ${url} failed (${error}); attempt ${attempts}, retrying in ${delay} ms`);
  }

  /**
   * An endpoint's health after this batch's calls to it: any 2xx ends a run of failures; a 410, or
   * failures lasting `webhookDisableAfterMs`, disable it. Answers the log lines to write.
   */

  /**
   * An endpoint's health after this batch's calls to it: any 2xx ends a run of failures; a 410, or
   * failures lasting `webhookDisableAfterMs`, disable it. Answers the log lines to write.
   */
  async updateEndpoint(
    trx: Transaction<CrmTables>,
    endpoint: EndpointRow,
    results: CallResult[],
    now: number,
  ): Promise<(() => void)[]> {
    const { config, logger } = this.options;
    if (results.some((result) => result.status === 410)) {
      await this.disable(trx, endpoint.id, 'the endpoint answered 410 Gone', now);
      return [
        () => logger.warn(`Webhook endpoint ${shownUrl(endpoint)} answered 410 Gone: disabled`),
      ];
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
          `Webhook endpoint ${shownUrl(endpoint)} has failed since ${new Date(failingSince).toISOString()}: disabled`,
        ),
    ];
  }

  /** Gives claimed messages back as they were, due at once: a shutdown stopped their calls. */

  async finish(
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

  async disable(
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
