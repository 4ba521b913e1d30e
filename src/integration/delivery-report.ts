import { CUSTOMER_CREATED, CUSTOMER_DELETED } from '../contracts/customer-events.js';
import type { Logger } from '../core/logging.js';
import { traceIdFromTraceparent } from '../core/tracing.js';
import type { Plan } from './convergence.js';
import type { FoundRequest } from './inventory-client.js';
import type { IntegrationMetrics } from './metrics.js';
import type { DeliveryRow } from './migrations.js';
import type { Settlement } from './store/claims.js';
import type { NewDelivery } from './store/new-delivery.js';

/** What every log line about one delivery carries. */
export interface LogFields {
  customer_id: string;
  trace_id: string | undefined;
}

/** The `operation` label of a delivery's metrics: what its attempt asked, `none` when nothing. */
export const operationLabel = (operation: Plan['operation'] | undefined) => operation ?? 'none';

/**
 * The log lines and metrics of the deliveries, in the order their steps happen: a customer's
 * state found, then the call for it started, then its outcome.
 */
export class DeliveryReporter {
  constructor(
    private readonly logger: Logger,
    private readonly metrics: IntegrationMetrics,
  ) {}

  /** New states recorded (a new customer, a change, a deletion), as their sources found them. */
  found(items: readonly NewDelivery[]): void {
    for (const item of items) {
      const fields = {
        customer_id: item.customerId,
        trace_id: traceIdFromTraceparent(item.traceparent),
        version: item.customerVersion,
        source: item.source,
      };
      // The reconciliation finds what push had not brought: said, for whoever wonders why.
      const how =
        item.source === 'reconcile' ? ' by reconciliation; push had not delivered it' : '';
      if (item.eventType === CUSTOMER_CREATED) {
        this.metrics.customersSeen.inc({ source: item.source });
        this.logger.info(
          fields,
          `Found new customer: ${item.customerName} (ID: ${item.customerId})${how}`,
        );
      } else if (item.eventType === CUSTOMER_DELETED) {
        this.logger.info(
          fields,
          `Customer deleted: ID ${item.customerId} (version ${item.customerVersion})${how}`,
        );
      } else {
        this.logger.info(
          fields,
          `Customer updated: ${item.customerName} (ID: ${item.customerId}, version ${item.customerVersion})${how}`,
        );
      }
    }
  }

  /** The call for a delivery is about to be made. */
  starting(row: DeliveryRow, plan: Plan, fields: LogFields): void {
    const id = row.customer_id;
    switch (plan.change?.op) {
      case 'create':
        return this.logger.info(fields, `Creating package request for customer ID: ${id}`);
      case 'update':
        return this.logger.info(
          fields,
          `Updating package request for customer ID: ${id} to version ${plan.change.version}`,
        );
      case 'cancel':
      case 'fence':
        return this.logger.info(fields, `Cancelling package request for customer ID: ${id}`);
      default:
        return undefined;
    }
  }

  /** Counts and logs one delivery's outcome once it is written (or found taken over). */
  settled(
    row: DeliveryRow,
    outcome: Settlement['outcome'],
    result: FoundRequest | Error | undefined,
    written: boolean,
    fields: LogFields,
    now: number,
  ): void {
    const { metrics, logger } = this;
    const id = row.customer_id;
    const operation = operationLabel('operation' in outcome ? outcome.operation : undefined);
    if (!written) {
      metrics.deliveries.inc({ operation, outcome: 'late_completion' });
      logger.warn(
        fields,
        `The call for customer ID: ${id} was made, but either this instance's claim had expired (the instance that took it over records it) or a newer state of the customer arrived meanwhile (it is next)`,
      );
      return;
    }
    const attempts = row.attempts + 1;
    const requestId = result && !(result instanceof Error) ? result.request?.id : undefined;
    const withRequest = { ...fields, package_request_id: requestId };
    switch (outcome.state) {
      case 'delivered': {
        const created = result !== undefined && !(result instanceof Error) && result.created;
        const label = outcome.outcome === 'created' && !created ? 'duplicate' : outcome.outcome;
        metrics.deliveries.inc({ operation, outcome: label });
        metrics.lag.observe(
          { operation },
          Math.max(
            0,
            now -
              (operation === 'create'
                ? row.customer_created_at
                : (row.changed_at ?? row.customer_created_at)),
          ) / 1000,
        );
        logger.info(withRequest, deliveredLine(id, outcome.outcome, created, requestId, row));
        return;
      }
      case 'advanced':
        metrics.deliveries.inc({ operation, outcome: 'advanced' });
        logger.info(
          withRequest,
          row.customer_deleted_at === null
            ? `Package request for customer ID: ${id} is at customer version ${outcome.appliedVersion ?? 1}; updating it to version ${row.customer_version} next`
            : `Found package request ${requestId} of deleted customer ID: ${id}; cancelling it next`,
        );
        return;
      case 'dead':
        metrics.deliveries.inc({ operation, outcome: 'dead_letter' });
        metrics.deadLettered.inc();
        logger.error(
          { ...fields, attempts, status: outcome.status, operation },
          `Moved customer ID: ${id} (${operation}, version ${row.customer_version}) to the dead letters after ${attempts} attempt(s): ${outcome.error}. Fix the cause, then replay it (mip dlq replay ${id}).`,
        );
        return;
      case 'retrying': {
        const delay = outcome.nextAttemptAt - now;
        metrics.deliveries.inc({ operation, outcome: 'retry' });
        metrics.retries.inc();
        logger.warn(
          { ...fields, attempts, status: outcome.status, retry_in_ms: delay, operation },
          `Attempt ${attempts} to ${operation} the package request for customer ID: ${id} failed: ${outcome.error}; retrying in ${(delay / 1000).toFixed(1)} s`,
        );
        return;
      }
      default:
        return;
    }
  }
}

function deliveredLine(
  id: string,
  outcome: Extract<Settlement['outcome'], { state: 'delivered' }>['outcome'],
  created: boolean,
  requestId: string | undefined,
  row: DeliveryRow,
): string {
  switch (outcome) {
    case 'created':
      return created
        ? `Successfully created package request for customer ID: ${id}`
        : `Package request for customer ID: ${id} already existed (${requestId}); nothing to do`;
    case 'updated':
      return `Successfully updated package request for customer ID: ${id} to version ${row.customer_version}`;
    case 'cancelled':
      return `Cancelled package request for customer ID: ${id}`;
    case 'left_shipped':
      return `Package request for customer ID: ${id} had already shipped; left as shipped, its recipient the shipping record`;
    case 'never_created':
      return `Customer ID: ${id} was deleted before a package request was created; nothing to cancel`;
  }
}
