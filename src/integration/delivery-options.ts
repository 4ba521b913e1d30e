import type { RetryPolicy } from '../core/backoff.js';
import type { Logger } from '../core/logging.js';
import type { CircuitState } from './circuit.js';
import type { FoundRequest, PackageChange } from './inventory-client.js';
import type { IntegrationMetrics } from './metrics.js';
import type { SyncStore } from './store/sync-store.js';

/** What the delivery worker (`delivery.ts`) is built from. */
export interface DeliveryWorkerOptions {
  store: SyncStore;
  /**
   * Makes Inventory's changes in one call (through the circuit breaker). Throws when the call
   * failed as a whole; otherwise answers, per change in order, what Inventory holds or that
   * change's error.
   */
  apply: (
    changes: PackageChange[],
    headers: Record<string, string>,
    signal: AbortSignal,
  ) => Promise<(FoundRequest | Error)[]>;
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
