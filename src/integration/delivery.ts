import { chunk } from '../core/batches.js';
import { GroupCommit, type CommittedBatch } from '../core/group-commit.js';
import { retryDelayMs, shouldGiveUp } from '../core/backoff.js';
import {
  setUpTracing,
  SpanKind,
  startSpan,
  traceIdFromTraceparent,
  traceIdOf,
  traceparentOf,
} from '../core/tracing.js';
import { WorkLoop } from '../core/work-loop.js';
import type { DeliveryOperation } from '../contracts/admin-api.js';
import { isCircuitOpenError } from './circuit.js';
import { decide, planFor, targetOfRow, type CustomerTarget, type Plan } from './convergence.js';
import { DeliveryReporter, operationLabel, type LogFields } from './delivery-report.js';
import type { FoundRequest } from './inventory-client.js';
import { NonRetryableError, TransientError } from '../core/retryable-errors.js';
import type { DeliveryRow } from './migrations.js';
import type { Inbox } from './sources/source.js';
import type { FailedOutcome, Settlement } from './store/claims.js';
import type { PushedItems, PushedMessage, RecordFromFeed } from './store/inbox.js';
import { isNewlyClaimed, type LimitedClaim } from './store/recording-claims.js';
import type { DeliveryWorkerOptions } from './delivery-options.js';
import type { NewDelivery } from './store/new-delivery.js';

/** Call slots held for new customers as they are recorded, and the claim to write them under. */
interface ReservedRoom {
  slots: number;
  /** Undefined when no slot was free: the customers are written pending. */
  claim: LimitedClaim | undefined;
}

/** Calls in a row that bring Inventory closer without matching (advanced) before it counts as failing. */
const MAX_STEPS = 5;

/**
 * Claims due deliveries and calls Inventory for them, a batch per call and up to `concurrency`
 * calls at once. Every outcome is written back under the claim: delivered, retrying (with
 * backoff), or dead-lettered. A claim that expired (this process stalled) makes the write-back
 * fail: that late completion is counted, and the instance that took the delivery over owns it.
 */
export class DeliveryWorker implements Inbox {
  private readonly loop: WorkLoop<DeliveryRow[]>;
  private readonly reporter: DeliveryReporter;
  /** Pushed messages that arrive together are recorded in one transaction. */
  private readonly pushes: GroupCommit<PushedItems, NewDelivery[] | undefined>;
  /** The integration's spans, under its own name also when it shares a process. */
  private readonly tracer = setUpTracing('integration');
  private stopping = false;

  constructor(private readonly options: DeliveryWorkerOptions) {
    const { store, concurrency, batchSize, claimMs, instanceId, logger } = options;
    this.reporter = new DeliveryReporter(logger, options.metrics);
    this.loop = new WorkLoop({
      name: 'deliveries',
      concurrency,
      claim: async (calls) =>
        chunk(await store.claims.claimDue(instanceId, calls * batchSize, claimMs), batchSize),
      handle: (rows, abandoned) => this.deliver(rows, abandoned),
      logger,
      idleMs: options.idleMs,
    });
    this.pushes = new GroupCommit({
      dialect: store.dialect,
      // A group's new customers go to Inventory in one call.
      maxBatch: batchSize,
      commit: (pushed) => this.recordPushes(pushed),
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
   * Messages pushed together share one transaction (group commit). With a call slot free, their
   * new customers are written already claimed by this instance and sent at once, in one call,
   * without a claim query; otherwise they are written pending and the loop claims them when a
   * slot frees up. Answers the new customers, or undefined for a redelivered message id.
   */
  recordPushed(message: PushedMessage, items: NewDelivery[]): Promise<NewDelivery[] | undefined> {
    return this.pushes.submit({ message, items });
  }

  private async recordPushes(
    pushed: readonly PushedItems[],
  ): Promise<CommittedBatch<NewDelivery[] | undefined>> {
    const room = this.reserveRoom(pushed.reduce((sum, { items }) => sum + items.length, 0));
    let recorded;
    try {
      recorded = await this.options.store.inbox.recordPushedItems(pushed, room.claim, Date.now());
    } catch (error) {
      this.loop.unreserve(room.slots);
      throw error;
    }
    const { accepted, rows } = recorded;
    // Said before any step for them is logged.
    this.reporter.found(accepted.flatMap((found) => found ?? []));
    // Customers seen for the first time were written claimed (revision 0). A newer state of a
    // known customer was written pending (or left to the instance that holds it).
    const { claim } = room;
    const claimed = claim ? rows.filter((row) => isNewlyClaimed(row, claim.holder)) : [];
    this.handOff(room, claimed, claimed.length < rows.length);
    return { results: accepted };
  }

  /**
   * Records a read of the feed with its cursor's move. With call slots free, the new customers
   * (as many as those slots' calls carry) are written already claimed by this instance and sent
   * at once, without a claim query; the rest are written pending and the loop claims them.
   */
  readonly recordFromFeed: RecordFromFeed = async (source, from, to, items, lease, now) => {
    const room = this.reserveRoom(items.length);
    let recorded;
    try {
      recorded = await this.options.store.inbox.recordFeedPage(
        { source, from, to, items, lease },
        room.claim,
        now ?? Date.now(),
      );
    } catch (error) {
      this.loop.unreserve(room.slots);
      throw error;
    }
    if (!recorded) {
      this.loop.unreserve(room.slots);
      return undefined;
    }
    const { accepted, claimed } = recorded;
    this.reporter.found(accepted);
    this.handOff(room, claimed, claimed.length < accepted.length);
    return accepted;
  };

  /**
   * Waits (at most `maxWaitMs`) until this instance can send `customers` new customers at once, so
   * a reader of the feed takes a page when it can be sent rather than reading ahead of the calls:
   * written claimed, that page then needs no claim query. Waits for nothing while sending is
   * stopped (circuit open, shutting down), nor on PostgreSQL, where several instances may share
   * the work: there pages are read ahead, and what this instance cannot send at once is written
   * pending for any instance to claim.
   */
  waitForRoom(customers: number, maxWaitMs: number, signal: AbortSignal): Promise<void> {
    const { store, batchSize } = this.options;
    if (this.sendingStopped() || store.dialect === 'postgres') return Promise.resolve();
    return this.loop.waitForFreeSlots(Math.ceil(customers / batchSize), maxWaitMs, signal);
  }

  /**
   * While stopping, nothing new starts here (pending, the next instance takes it at once); with
   * the circuit open, calls would be given back untried.
   */
  private sendingStopped(): boolean {
    return this.stopping || this.options.circuitState() === 'open';
  }

  /**
   * Holds the free call slots needed to send up to `customers` new customers as they are
   * recorded (none while sending is stopped), and the claim to write them under.
   */
  private reserveRoom(customers: number): ReservedRoom {
    const { instanceId, claimMs, batchSize } = this.options;
    const slots = this.sendingStopped() ? 0 : this.loop.reserve(Math.ceil(customers / batchSize));
    const claim = { holder: instanceId, lockMs: claimMs, limit: slots * batchSize };
    return { slots, claim: slots > 0 ? claim : undefined };
  }

  /**
   * Sends the deliveries written claimed under `room` in its slots and gives back the slots left;
   * with `pendingToo`, has the loop look for those written pending. Once stopping began (during
   * the write), the claimed ones are released for the next instance instead.
   */
  private handOff(room: ReservedRoom, claimed: DeliveryRow[], pendingToo: boolean): void {
    const batches = this.stopping ? [] : chunk(claimed, this.options.batchSize);
    for (const batch of batches) this.loop.handleReserved(batch);
    this.loop.unreserve(room.slots - batches.length);
    if (this.stopping && claimed.length > 0) void this.release(claimed, 0);
    if (pendingToo) this.wake();
  }

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
    // Each delivery continues the trace of the CRM request that caused its customer's latest
    // state. A batch is one HTTP call, so its span continues the first delivery's trace; every
    // log line carries its own delivery's trace id.
    const span = startSpan(
      'sync package requests',
      SpanKind.CLIENT,
      rows[0]!.traceparent,
      this.tracer,
    );
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
    const { store, instanceId } = this.options;
    if (this.options.circuitState() === 'open') {
      await this.release(rows);
      return;
    }
    const targets = rows.map(targetOfRow);
    const plans = targets.map(planFor);
    rows.forEach((row, index) => this.reporter.starting(row, plans[index]!, logs[index]!));
    const calls = plans.flatMap((plan, index) => (plan.change ? [{ index, plan }] : []));
    const startedAt = Date.now();
    const results: (FoundRequest | Error | undefined)[] = rows.map(() => undefined);
    if (calls.length > 0) {
      let answers: (FoundRequest | Error)[];
      try {
        answers = await this.options.apply(
          calls.map(({ plan }) => plan.change!),
          { traceparent },
          abandoned,
        );
      } catch (error) {
        // Stopped at the shutdown deadline, or refused without a call (the circuit opened
        // meanwhile): not an attempt; the next instance, or the next look here, sends it again.
        if (abandoned.aborted) return this.release(rows, 0);
        if (isCircuitOpenError(error)) return this.release(rows);
        answers = calls.map(() => error as Error);
      }
      this.options.metrics.attempts.inc(calls.length);
      calls.forEach(({ index }, i) => (results[index] = answers[i]));
    }
    const now = Date.now();
    const settlements: Settlement[] = rows.map((row, index) => ({
      row,
      outcome: this.outcomeOf(row, targets[index]!, plans[index]!, results[index], now),
      attempt: { startedAt, traceId: logs[index]!.trace_id },
    }));
    let written: boolean[];
    try {
      written = await store.claims.settleClaims(instanceId, settlements, now);
    } catch (error) {
      this.options.logger.error(
        { err: error, deliveries: rows.length },
        'Could not record the outcome of a call to Inventory; the claims will expire and the deliveries will be retried',
      );
      return;
    }
    rows.forEach((row, index) =>
      this.reporter.settled(
        row,
        settlements[index]!.outcome,
        results[index],
        written[index]!,
        logs[index]!,
        now,
      ),
    );
  }

  /** What to record of one delivery's attempt, from what Inventory answered (or nothing asked). */
  private outcomeOf(
    row: DeliveryRow,
    target: CustomerTarget,
    plan: Plan,
    result: FoundRequest | Error | undefined,
    now: number,
  ): Settlement['outcome'] {
    const { operation } = plan;
    // Nothing to ask: deleted before any package was asked for.
    if (result === undefined) return { state: 'delivered', outcome: 'never_created', operation };
    if (result instanceof Error) return this.failure(row, operation, result, now);
    const decision = decide(target, plan, result);
    if (decision.state === 'refused') return this.failure(row, operation, decision.error, now);
    if (decision.state === 'advanced' && row.attempts + 1 >= MAX_STEPS) {
      return {
        ...this.failure(
          row,
          operation,
          new TransientError(
            `Inventory did not match customer version ${target.version} after ${MAX_STEPS} calls in a row`,
          ),
          now,
        ),
        // What the call found out is kept, so the retry starts from it: without the package
        // request's id it would ask for the same create (or search) again, forever.
        packageRequestId: decision.packageRequestId,
        appliedVersion: decision.appliedVersion,
      };
    }
    return { ...decision, operation };
  }

  /** What to record for a failed attempt: retry after a backoff, or give up (dead letter). */
  private failure(
    row: DeliveryRow,
    operation: DeliveryOperation | null,
    error: Error,
    now: number,
  ): FailedOutcome {
    const { policy } = this.options;
    const attempts = row.attempts + 1;
    const permanent = error instanceof NonRetryableError;
    const giveUp = permanent || shouldGiveUp(attempts, row.failing_since ?? now, now, policy);
    const retryAfterMs = error instanceof TransientError ? error.retryAfterMs : undefined;
    return {
      state: giveUp ? 'dead' : 'retrying',
      operation,
      error: error.message,
      status:
        error instanceof NonRetryableError || error instanceof TransientError
          ? error.status
          : undefined,
      nextAttemptAt: now + (giveUp ? 0 : retryDelayMs(attempts, policy, retryAfterMs)),
    };
  }

  /**
   * Gives claimed rows back unattempted, due again in `retryInMs`; by default the circuit's reset,
   * for an open circuit: due when it probes again.
   */
  private async release(
    rows: DeliveryRow[],
    retryInMs = this.options.circuitResetMs,
  ): Promise<void> {
    const { store, instanceId, metrics, logger } = this.options;
    for (const row of rows) {
      const { operation } = planFor(targetOfRow(row));
      metrics.deliveries.inc({ operation: operationLabel(operation), outcome: 'not_attempted' });
    }
    const nextAttemptAt = Date.now() + retryInMs;
    try {
      const written = await store.claims.settleClaims(
        instanceId,
        rows.map((row) => ({ row, outcome: { state: 'released', nextAttemptAt } })),
      );
      // A claim that expired meanwhile (this process stalled) is another instance's now.
      const late = written.filter((ok) => !ok).length;
      if (late > 0) {
        metrics.deliveries.inc({ operation: 'none', outcome: 'late_completion' }, late);
      }
    } catch (error) {
      logger.error({ err: error }, 'Could not release the deliveries; their claims will expire');
    }
  }
}
