import os from 'node:os';
import {
  readChoice,
  readInteger,
  readOptionalString,
  readString,
  readUrl,
  type Env,
} from '../core/config.js';

export const SYNC_MODES = ['poll'] as const;
export type SyncMode = (typeof SYNC_MODES)[number];

/** The integration service's own settings; every field's default is what `npm start` uses. */
export interface IntegrationConfig {
  /** Base URL of the CRM API. Default `http://127.0.0.1:8000`. */
  crmUrl: string;
  /** Base URL of the Inventory API. Default `http://127.0.0.1:8001`. */
  inventoryUrl: string;
  /** Bearer token sent to the CRM and Inventory (their `API_TOKEN`). Default none. */
  apiToken: string | undefined;
  /** Where customers come from. Default `poll` (the only source so far). */
  syncMode: SyncMode;
  /** Longest time between two reads of the CRM feed, in ms. Default 10000. */
  pollIntervalMs: number;
  /** Events read from the feed per request. Default 500. */
  pollBatchSize: number;
  /** Deliveries to Inventory in flight at once, per instance. Default 8. */
  deliveryConcurrency: number;
  /** Calls to Inventory per delivery before a transient failure may be dead-lettered. Default 20. */
  maxAttempts: number;
  /** A transient failure is never dead-lettered before it has lasted this long, in ms. Default 3600000. */
  deadLetterAfterMs: number;
  /** First retry delay ceiling, doubled per attempt, in ms. Default 500. */
  retryBaseMs: number;
  /** Largest retry delay, in ms. Default 300000 (5 min). */
  retryMaxDelayMs: number;
  /** Timeout of one HTTP call to the CRM or Inventory, in ms. Default 5000. */
  requestTimeoutMs: number;
  /** How long the circuit stays open before a probe call, in ms. Default 5000. */
  circuitResetMs: number;
  /** How long a poll lease or a delivery claim lasts without renewal, in ms. Default 30000. */
  leaseMs: number;
  /** Name of this instance in leases and claims. Default `<hostname>-<pid>`. */
  instanceId: string;
}

export function readIntegrationConfig(env: Env): IntegrationConfig {
  const http = ['http:', 'https:'];
  const ms = (name: string, fallback: number, min: number, max: number) =>
    readInteger(env, name, fallback, { min, max });
  const config: IntegrationConfig = {
    crmUrl: readUrl(env, 'CRM_URL', 'http://127.0.0.1:8000', http)!.replace(/\/+$/, ''),
    inventoryUrl: readUrl(env, 'INVENTORY_URL', 'http://127.0.0.1:8001', http)!.replace(/\/+$/, ''),
    apiToken: readOptionalString(env, 'API_TOKEN'),
    syncMode: readChoice(env, 'SYNC_MODE', 'poll', SYNC_MODES),
    pollIntervalMs: ms('POLL_INTERVAL_MS', 10_000, 50, 3_600_000),
    pollBatchSize: readInteger(env, 'POLL_BATCH_SIZE', 500, { min: 1, max: 1000 }),
    deliveryConcurrency: readInteger(env, 'DELIVERY_CONCURRENCY', 8, { min: 1, max: 256 }),
    maxAttempts: readInteger(env, 'MAX_ATTEMPTS', 20, { min: 1, max: 1000 }),
    deadLetterAfterMs: ms('DEAD_LETTER_AFTER_MS', 3_600_000, 0, 30 * 86_400_000),
    retryBaseMs: ms('RETRY_BASE_MS', 500, 1, 3_600_000),
    retryMaxDelayMs: ms('RETRY_MAX_DELAY_MS', 300_000, 1, 86_400_000),
    requestTimeoutMs: ms('REQUEST_TIMEOUT_MS', 5_000, 10, 300_000),
    circuitResetMs: ms('CIRCUIT_RESET_MS', 5_000, 10, 3_600_000),
    leaseMs: ms('LEASE_MS', 30_000, 100, 3_600_000),
    instanceId: readString(env, 'INSTANCE_ID', `${os.hostname()}-${process.pid}`),
  };
  return config;
}
