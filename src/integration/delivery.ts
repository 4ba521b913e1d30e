import { chunk } from '../core/batches.js';
import type { Logger } from '../core/logging.js';
import { retryDelayMs, shouldGiveUp, type RetryPolicy } from '../core/backoff.js';
import {
  SpanKind,
  startSpan,
  traceIdFromTraceparent,
  traceIdOf,
  traceparentOf,
} from '../core/tracing.js';
import { WorkLoop } from '../core/work-loop.js';
import { isCircuitOpenError, type CircuitState } from './circuit.js';
import type { PackageRequestReceipt } from './clients.js';
import { NonRetryableError, TransientError } from '../core/retryable-errors.js';
import type { IntegrationMetrics } from './metrics.js';
import type { DeliveryRow } from './migrations.js';
import type { Inbox } from './sources/source.js';
import type { FailedOutcome, Settlement } from './store/claims.js';
import type { PushedMessage, RecordFromFeed } from './store/inbox.js';
import type { NewDelivery } from './store/new-delivery.js';
import type { SyncStore } from './store/sync-store.js';

export interface DeliveryWorkerOptions {
  store: SyncStore;
  /**
   * Asks Inventory for the customers' welcome packages in one call (through the circuit
   * breaker). Throws when the call failed as a whole; otherwise answers, per customer in order, a
   * receipt or that item's error.
   */
  send: (
    customerIds: string[],
    headers: Record<string, string>,
    signal: AbortSignal,
  ) => Promise<(PackageRequestReceipt | Error)[]>;
  circuitState: () => CircuitState;
  policy: RetryPolicy;
  /** Calls to Inventory in flight at once. */
  concurrency: number;
  /** Most deliveries sent in one call. */
  batchSize: number;
  /** How long a claim lasts; longer than one call's timeout. */
  claimMs: number;
  /** Wait before retrying calls a closed circuit refused, in ms. */
  circuitResetMs: number;
  instanceId: string;
  logger: Logger;
  metrics: IntegrationMetrics;
  /** Idle wait between looks for due work, in ms. Default 500. */
  idleMs?: number;
}

/** What every log line about one delivery carries. */
interface LogFields {
  customer_id: string;
  trace_id: string | undefined;
}

/**
 * Claims due deliveries and calls Inventory for them, a batch per call and up to `concurrency`
 * calls at once. Every outcome is written back under the claim: delivered, retrying (with
 * backoff), or dead-lettered. A claim that expired (this process stalled) makes the write-back
 * fail: that late completion is counted, and the instance that took the delivery over owns it.
 */
export class DeliveryWorker implements Inbox {
  private readonly loop: WorkLoop<DeliveryRow[]>;
  private stopping = false;

  constructor(private readonly options: DeliveryWorkerOptions) {
    const { store, concurrency, batchSize, claimMs, instanceId, logger } = options;
    this.loop = new WorkLoop({
      name: 'deliveries',
      concurrency,
      claim: async (calls) =>
        chunk(await store.claims.claimDue(instanceId, calls * batchSize, claimMs), batchSize),
      handle: (rows, abandoned) => this.deliver(rows, abandoned),
      logger,
      idleMs: options.idleMs,
    });
  }

  start(): void {
    this.loop.start();
  }

  /** Looks for work now rather than at the next idle tick (new items, a replay). */
  wake(): void {
    this.loop.wake();
  }

  /**
   * Records a pushed message's customers (webhook, RabbitMQ) and starts delivering the new ones.
   * With a call slot free, they are written already claimed by this instance and sent at once,
   * without a claim query; otherwise they are written pending and the loop claims them when a
   * slot frees up. Answers the new customers, or undefined for a redelivered message id.
   */
  async recordPushed(
    message: PushedMessage,
    items: NewDelivery[],
  ): Promise<NewDelivery[] | undefined> {
    const { store, instanceId, claimMs, batchSize } = this.options;
    // While stopping, nothing new starts here: pending, the next instance takes it at once.
    if (this.stopping || this.loop.freeSlots <= 0) {
      const fresh = await store.inbox.recordMessage(message, items);
      if (fresh && fresh.length > 0) this.wake();
      return fresh;
    }
    const rows = await store.inbox.recordMessageClaimed(message, items, {
      holder: instanceId,
      lockMs: claimMs,
    });
    if (!rows) return undefined;
    for (const batch of chunk(rows, batchSize)) this.loop.handleNow(batch);
    const fresh = new Set(rows.map((row) => row.customer_id));
    return items.filter((item) => fresh.has(item.customerId));
  }

  /** Records a read of the feed with its cursor's move, and looks for the new customers at once. */
  readonly recordFromFeed: RecordFromFeed = async (...page) => {
    const fresh = await this.options.store.inbox.recordFromFeed(...page);
    if (fresh && fresh.length > 0) this.wake();
    return fresh;
  };

  /**
   * Stops claiming and waits for the calls in flight to finish (each is bounded by its timeout);
   * those still in flight after `abandonAfterMs` are stopped and released, unrecorded, for the
   * next instance (Inventory's idempotency keys make the repeat safe). Default: wait for all.
   */
  async stop(abandonAfterMs?: number): Promise<void> {
    this.stopping = true;
    await this.loop.stop(abandonAfterMs);
  }

  private async deliver(rows: DeliveryRow[], abandoned: AbortSignal): Promise<void> {
    // Each delivery continues the trace of the CRM request that created its customer. A batch is
    // one HTTP call, so its span continues the first delivery's trace; every log line carries its
    // own delivery's trace id.
    const span = startSpan('create welcome packages', SpanKind.CLIENT, rows[0]!.traceparent);
    try {
      const logs = rows.map((row, index) => ({
        customer_id: row.customer_id,
        trace_id: index === 0 ? traceIdOf(span) : traceIdFromTraceparent(row.traceparent),
      }));
      await this.attempt(rows, traceparentOf(span), logs, abandoned);
    } finally {
      span.end();
    }
  }

  private async attempt(
    rows: DeliveryRow[],
    traceparent: string,
    logs: LogFields[],
    abandoned: AbortSignal,
  ): Promise<void> {
    const { store, instanceId, metrics, logger } = this.options;
    if (this.options.circuitState() === 'open') {
      await this.release(rows);
      return;
    }
    rows.forEach((row, index) =>
      logger.info(logs[index], `Creating package request for customer ID: ${row.customer_id}`),
    );
    let results: (PackageRequestReceipt | Error)[];
    try {
      results = await this.options.send(
        rows.map((row) => row.customer_id),
        { traceparent },
        abandoned,
      );
    } catch (error) {
      // Stopped at the shutdown deadline, or refused without a call (the circuit opened
      // meanwhile): not an attempt; the next instance, or the next look here, sends it again.
      if (abandoned.aborted) return this.release(rows, 0);
      if (isCircuitOpenError(error)) return this.release(rows);
      results = rows.map(() => error as Error);
    }
    metrics.attempts.inc(rows.length);
    const now = Date.now();
    const settlements: Settlement[] = rows.map((row, index) => {
      const result = results[index]!;
      return {
        row,
        outcome:
          result instanceof Error
            ? this.failure(row, result, now)
            : { state: 'delivered', packageRequestId: result.packageRequestId },
      };
    });
    let written: boolean[];
    try {
      written = await store.claims.settleClaims(instanceId, settlements, now);
    } catch (error) {
      logger.error(
        { err: error, deliveries: rows.length },
        'Could not record the outcome of a call to Inventory; the claims will expire and the deliveries will be retried',
      );
      return;
    }
    rows.forEach((row, index) =>
      this.report(
        row,
        settlements[index]!.outcome,
        results[index]!,
        written[index]!,
        logs[index]!,
        now,
      ),
    );
  }

  /** What to record for a failed attempt: retry after a backoff, or give up (dead letter). */
  private failure(row: DeliveryRow, error: Error, now: number): FailedOutcome {
    const { policy } = this.options;
    const attempts = row.attempts + 1;
    const permanent = error instanceof NonRetryableError;
    const giveUp = permanent || shouldGiveUp(attempts, row.failing_since ?? now, now, policy);
    const retryAfterMs = error instanceof TransientError ? error.retryAfterMs : undefined;
    return {
      state: giveUp ? 'dead' : 'retrying',
      error: error.message,
      status:
        error instanceof NonRetryableError || error instanceof TransientError
          ? error.status
          : undefined,
      nextAttemptAt: now + (giveUp ? 0 : retryDelayMs(attempts, policy, retryAfterMs)),
    };
  }

  /** Counts and logs one delivery's outcome once it is written (or found taken over). */
  private report(
    row: DeliveryRow,
    outcome: Settlement['outcome'],
    result: PackageRequestReceipt | Error,
    written: boolean,
    fields: LogFields,
    now: number,
  ): void {
    const { metrics, logger } = this.options;
    if (!written) {
      metrics.deliveries.inc({ outcome: 'late_completion' });
      logger.warn(
        fields,
        `The call for customer ID: ${row.customer_id} was made, but this instance's claim had expired; the instance that took it over records it`,
      );
      return;
    }
    const attempts = row.attempts + 1;
    if (outcome.state === 'delivered') {
      const receipt = result as PackageRequestReceipt;
      metrics.deliveries.inc({ outcome: receipt.created ? 'delivered' : 'duplicate' });
      metrics.lag.observe(Math.max(0, now - row.customer_created_at) / 1000);
      logger.info(
        { ...fields, package_request_id: receipt.packageRequestId },
        receipt.created
          ? `Successfully created package request for customer ID: ${row.customer_id}`
          : `Package request for customer ID: ${row.customer_id} already existed (${receipt.packageRequestId}); nothing to do`,
      );
    } else if (outcome.state === 'dead') {
      metrics.deliveries.inc({ outcome: 'dead_letter' });
      metrics.deadLettered.inc();
      logger.error(
        { ...fields, attempts, status: outcome.status },
        `Moved customer ID: ${row.customer_id} to the dead letters after ${attempts} attempt(s): ${outcome.error}. Fix the cause, then replay it (mip dlq replay ${row.customer_id}).`,
      );
    } else if (outcome.state === 'retrying') {
      const delay = outcome.nextAttemptAt - now;
      metrics.deliveries.inc({ outcome: 'retry' });
      metrics.retries.inc();
      logger.warn(
        { ...fields, attempts, status: outcome.status, retry_in_ms: delay },
        `Attempt ${attempts} for customer ID: ${row.customer_id} failed: ${outcome.error}; retrying in ${(delay / 1000).toFixed(1)} s`,
      );
    }
  }

  /** The circuit is open: give the deliveries back untried, due when the circuit probes again. */
  /** Gives claimed rows back unattempted, due again in `retryInMs` (default: the circuit's reset). */
  private async release(
    rows: DeliveryRow[],
    retryInMs = this.options.circuitResetMs,
  ): Promise<void> {
    const { store, instanceId, metrics, logger } = this.options;
    metrics.deliveries.inc({ outcome: 'not_attempted' }, rows.length);
    const nextAttemptAt = Date.now() + retryInMs;
    try {
      const written = await store.claims.settleClaims(
        instanceId,
        rows.map((row) => ({ row, outcome: { state: 'released', nextAttemptAt } })),
      );
      // A claim that expired meanwhile (this process stalled) is another instance's now.
      const late = written.filter((ok) => !ok).length;
      if (late > 0) metrics.deliveries.inc({ outcome: 'late_completion' }, late);
    } catch (error) {
      logger.error({ err: error }, 'Could not release the deliveries; their claims will expire');
    }
  }
}
