import type { Logger } from '../core/logging.js';
import { retryDelayMs, shouldGiveUp, type RetryPolicy } from '../core/backoff.js';
import { isCircuitOpenError, type CircuitState } from './circuit.js';
import { NonRetryableError, TransientError, type PackageRequestReceipt } from './clients.js';
import type { IntegrationMetrics } from './metrics.js';
import type { DeliveryRow, SyncStore } from './store.js';
import { SpanKind, startSpan, traceIdOf, traceparentOf } from '../core/tracing.js';
import { WorkLoop } from '../core/work-loop.js';

export interface DeliveryWorkerOptions {
  store: SyncStore;
  /** Creates the package request (through the circuit breaker). */
  send: (customerId: string, headers: Record<string, string>) => Promise<PackageRequestReceipt>;
  circuitState: () => CircuitState;
  policy: RetryPolicy;
  /** Deliveries in flight at once. */
  concurrency: number;
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

/**
 * Claims due deliveries and calls Inventory for each, up to `concurrency` at once. Every outcome is
 * written back under the claim: delivered, retrying (with backoff), or dead-lettered. A claim that
 * expired (this process stalled) makes the write-back fail: that late completion is counted, and
 * the instance that took the delivery over owns it.
 */
export class DeliveryWorker {
  private readonly loop: WorkLoop<DeliveryRow>;

  constructor(private readonly options: DeliveryWorkerOptions) {
    const { store, concurrency, claimMs, instanceId, logger } = options;
    this.loop = new WorkLoop({
      name: 'deliveries',
      concurrency,
      claim: (limit) => store.claimDue(instanceId, limit, claimMs),
      handle: (row) => this.deliver(row),
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

  /** Stops claiming and waits for the deliveries in flight to finish (each is bounded by its timeout). */
  async stop(): Promise<void> {
    await this.loop.stop();
  }

  private async deliver(row: DeliveryRow): Promise<void> {
    const { logger } = this.options;
    // The delivery continues the trace of the CRM request that created the customer.
    const span = startSpan('create welcome package', SpanKind.CLIENT, row.traceparent);
    const log = logger.child({ customer_id: row.customer_id, trace_id: traceIdOf(span) });
    try {
      await this.attempt(row, log, traceparentOf(span));
    } finally {
      span.end();
    }
  }

  private async attempt(row: DeliveryRow, log: Logger, traceparent: string): Promise<void> {
    const { store, instanceId, metrics } = this.options;
    if (this.options.circuitState() === 'open') {
      await this.release(row, log);
      return;
    }
    log.info(`Creating package request for customer ID: ${row.customer_id}`);
    let receipt: PackageRequestReceipt;
    try {
      receipt = await this.options.send(row.customer_id, { traceparent });
    } catch (error) {
      if (isCircuitOpenError(error)) {
        // Refused without a call (the circuit opened meanwhile): not an attempt.
        await this.release(row, log);
        return;
      }
      metrics.attempts.inc();
      await this.fail(row, error, log);
      return;
    }
    metrics.attempts.inc();
    const now = Date.now();
    try {
      if (!(await store.markDelivered(row, instanceId, receipt.packageRequestId, now))) {
        metrics.deliveries.inc({ outcome: 'late_completion' });
        log.warn(
          `Package request for customer ID: ${row.customer_id} was made, but this instance's claim had expired; the instance that took it over records it`,
        );
        return;
      }
    } catch (error) {
      log.error(
        { err: error },
        'Could not record the delivery; its claim will expire and it will be retried',
      );
      return;
    }
    metrics.deliveries.inc({ outcome: receipt.created ? 'delivered' : 'duplicate' });
    metrics.lag.observe(Math.max(0, now - row.customer_created_at) / 1000);
    log.info(
      { package_request_id: receipt.packageRequestId },
      receipt.created
        ? `Successfully created package request for customer ID: ${row.customer_id}`
        : `Package request for customer ID: ${row.customer_id} already existed (${receipt.packageRequestId}); nothing to do`,
    );
  }

  private async fail(row: DeliveryRow, error: unknown, log: Logger): Promise<void> {
    const { store, instanceId, metrics, policy } = this.options;
    const now = Date.now();
    const attempts = row.attempts + 1;
    const message = (error as Error).message ?? String(error);
    const status =
      error instanceof NonRetryableError || error instanceof TransientError
        ? error.status
        : undefined;
    const permanent = error instanceof NonRetryableError;
    const giveUp = permanent || shouldGiveUp(attempts, row.failing_since ?? now, now, policy);
    const delay = giveUp
      ? 0
      : retryDelayMs(
          attempts,
          policy,
          error instanceof TransientError ? error.retryAfterMs : undefined,
        );
    try {
      const written = await store.markFailed(
        row,
        instanceId,
        { state: giveUp ? 'dead' : 'retrying', error: message, status, nextAttemptAt: now + delay },
        now,
      );
      if (!written) {
        metrics.deliveries.inc({ outcome: 'late_completion' });
        return;
      }
    } catch (dbError) {
      log.error(
        { err: dbError },
        'Could not record the failed attempt; its claim will expire and it will be retried',
      );
      return;
    }
    if (giveUp) {
      metrics.deliveries.inc({ outcome: 'dead_letter' });
      metrics.deadLettered.inc();
      log.error(
        { attempts, status },
        `Moved customer ID: ${row.customer_id} to the dead letters after ${attempts} attempt(s): ${message}. Fix the cause, then replay it (mip dlq replay ${row.customer_id}).`,
      );
    } else {
      metrics.deliveries.inc({ outcome: 'retry' });
      metrics.retries.inc();
      log.warn(
        { attempts, status, retry_in_ms: delay },
        `Attempt ${attempts} for customer ID: ${row.customer_id} failed: ${message}; retrying in ${(delay / 1000).toFixed(1)} s`,
      );
    }
  }

  /** The circuit is open: give the delivery back untried, due when the circuit probes again. */
  private async release(row: DeliveryRow, log: Logger): Promise<void> {
    this.options.metrics.deliveries.inc({ outcome: 'not_attempted' });
    try {
      await this.options.store.releaseClaim(
        row,
        this.options.instanceId,
        Date.now() + this.options.circuitResetMs,
      );
    } catch (error) {
      log.error({ err: error }, 'Could not release the delivery; its claim will expire');
    }
  }
}
