import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ControlsRepository } from './store/controls.js';
import type { ReadModelsRepository } from './store/read-models.js';

/** Every metric the integration service exports; the README lists them. */
export function createIntegrationMetrics(
  registry: Registry,
  store: Pick<ReadModelsRepository, 'countByState'>,
  controls: Pick<ControlsRepository, 'read'>,
) {
  const registers = [registry];
  const customersSeen = new Counter({
    name: 'integration_customers_seen_total',
    help: 'Customers recorded for delivery for the first time, by the source that reported them.',
    labelNames: ['source'],
    registers,
  });
  return {
    customersSeen,
    /** Shows each source the mode runs at zero before its first customer, not as a missing series. */
    showSources(names: readonly string[]): void {
      for (const source of names) customersSeen.inc({ source }, 0);
    },
    pushDuplicates: new Counter({
      name: 'integration_push_duplicates_total',
      help: 'Pushed messages (webhook, AMQP) whose id had been received before: ignored.',
      labelNames: ['source'],
      registers,
    }),
    pushRejected: new Counter({
      name: 'integration_push_rejected_total',
      help: 'Pushed messages refused: bad signature or stale timestamp (webhook), malformed (AMQP).',
      labelNames: ['source'],
      registers,
    }),
    reconciliationFound: new Counter({
      name: 'integration_reconciliation_found_total',
      help: 'Customer states (new, changed or deleted) the reconciliation poll recorded first: push had missed them (or not yet delivered them).',
      registers,
    }),
    deliveries: new Counter({
      name: 'integration_deliveries_total',
      help: 'Finished delivery attempts by operation (create, update, cancel, none) and outcome: created, duplicate (Inventory already had it), updated, cancelled, left_shipped (it had shipped before the change), never_created (deleted first), advanced (closer, one more call needed), retry, dead_letter, late_completion (the claim had expired or a newer state arrived), not_attempted (circuit open).',
      labelNames: ['operation', 'outcome'],
      registers,
    }),
    attempts: new Counter({
      name: 'integration_delivery_attempts_total',
      help: 'Changes asked of Inventory (create, update, cancel or find a package request).',
      registers,
    }),
    retries: new Counter({
      name: 'integration_retries_total',
      help: 'Deliveries scheduled for another attempt after a transient failure.',
      registers,
    }),
    deadLettered: new Counter({
      name: 'integration_dead_letters_total',
      help: 'Deliveries moved to the dead letters.',
      registers,
    }),
    circuitState: new Gauge({
      name: 'integration_circuit_state',
      help: 'Circuit breaker per destination: 0 closed, 1 half-open, 2 open.',
      labelNames: ['destination'],
      registers,
    }),
    pollDuration: new Histogram({
      name: 'integration_poll_duration_seconds',
      help: 'Time to read a page of new events from the CRM feed and record it (empty long-polls are not timed).',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    polls: new Counter({
      name: 'integration_polls_total',
      help: 'Reads of the CRM feed by result: events, empty, error.',
      labelNames: ['result'],
      registers,
    }),
    lag: new Histogram({
      name: 'integration_end_to_end_lag_seconds',
      help: 'Time from the CRM recording a customer state to Inventory matching it, by operation: from creation for create, from the change for update and cancel.',
      labelNames: ['operation'],
      // From push (milliseconds) to polling and retries (seconds to minutes).
      buckets: [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 300,
        900, 3600,
      ],
      registers,
    }),
    byState: new Gauge({
      name: 'integration_deliveries',
      help: 'Deliveries by current state (read from the database at scrape time).',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await store.countByState();
        for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
      },
    }),
    paused: new Gauge({
      name: 'integration_delivery_paused',
      help: 'Whether delivery to Inventory is paused (mip pause): 1 while paused, else 0.',
      registers,
      async collect() {
        this.set((await controls.read()).paused ? 1 : 0);
      },
    }),
  };
}

export type IntegrationMetrics = ReturnType<typeof createIntegrationMetrics>;

/** The alert outbox's metrics: calls by alert type and outcome, and alerts waiting to be sent. */
export function createAlertMetrics(registry: Registry, pendingAlerts: () => Promise<number>) {
  const registers = [registry];
  new Gauge({
    name: 'integration_alerts_pending',
    help: 'Alert webhooks in the outbox still to be sent, one per alert and endpoint (read from the database at scrape time).',
    registers,
    async collect() {
      this.set(await pendingAlerts());
    },
  });
  return {
    calls: new Counter({
      name: 'integration_alerts_total',
      help: 'Alert webhook calls by alert type and outcome: sent (2xx), retry (failed, tried again later), failed (given up after ALERT_GIVE_UP_AFTER_MS).',
      labelNames: ['type', 'outcome'],
      registers,
    }),
  };
}
