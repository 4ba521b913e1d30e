import { BATCH_MAX_ITEMS } from '../contracts/package-requests.js';
import { readRetentionMs } from '../core/retention.js';
import { isSigningSecret } from '../core/webhooks/signing.js';
import {
  readWebhookTargetSettings,
  type WebhookTargetSettings,
} from '../core/webhooks/target-settings.js';
import {
  ConfigError,
  isLoopbackHost,
  readChoice,
  readInteger,
  readOptionalString,
  readInstanceId,
  readString,
  readUrl,
  redactUrl,
  type Env,
} from '../core/config.js';

export const SYNC_MODES = ['hybrid', 'webhook', 'amqp', 'poll'] as const;
export type SyncMode = (typeof SYNC_MODES)[number];

/** The integration service's own settings; every field's default is what `npm start` uses. */
export interface IntegrationConfig {
  /** Base URL of the CRM API. Default `http://127.0.0.1:8000`. */
  crmUrl: string;
  /** Base URL of the Inventory API. Default `http://127.0.0.1:8001`. */
  inventoryUrl: string;
  /** Bearer token sent to the CRM and Inventory (their `API_TOKEN`). Default none. */
  apiToken: string | undefined;
  /**
   * Where customers come from: `hybrid` (webhooks plus a reconciliation poll), `webhook`, `amqp`
   * (RabbitMQ) or `poll` (long-polling the CRM feed). Default `hybrid`.
   */
  syncMode: SyncMode;
  /** URL the CRM should POST webhooks to. Default: this service's own `/webhooks/crm`. */
  webhookUrl: string | undefined;
  /** RabbitMQ URL, required in `amqp` mode. Default none. */
  amqpUrl: string | undefined;
  /** Prefix of every exchange and queue name, to share a broker. Default none. */
  amqpNamePrefix: string;
  /** Messages RabbitMQ hands over before they are acknowledged. Default 100. */
  amqpPrefetch: number;
  /** Longest time between two reads of the CRM feed in poll mode, in ms. Default 10000. */
  pollIntervalMs: number;
  /**
   * In push modes, an event the push has not brought this long after it was recorded is read from
   * the CRM's feed instead, in ms. Default 5000.
   */
  gapRepairMs: number;
  /** Events read from the feed per request. Default 500. */
  pollBatchSize: number;
  /** Calls to Inventory in flight at once, per instance. Default 8. */
  deliveryConcurrency: number;
  /**
   * Most deliveries sent in one call (Inventory's batch endpoint; a single delivery uses the plain
   * endpoint). 1 sends every delivery on its own. Default 250.
   */
  deliveryBatchSize: number;
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
  /** Most calls a second this instance makes to Inventory, evenly spaced. Default 0: no limit. */
  inventoryMaxRps: number;
  /** How long pushed message ids and timeline entries are kept (`RETENTION_DAYS`). Default 30 days. */
  retentionMs: number;
  /** How long the circuit stays open before a probe call, in ms. Default 5000. */
  circuitResetMs: number;
  /** How long a poll lease or a delivery claim lasts without renewal, in ms. Default 30000. */
  leaseMs: number;
  /** Name of this instance in leases and claims. Default `<hostname>-<pid>`. */
  instanceId: string;
  /** Where alert webhooks may go besides the public internet (`WEBHOOK_ALLOW…_PRIVATE_TARGETS`). */
  webhookTargets: WebhookTargetSettings;
  /** Alert endpoints from `ALERT_WEBHOOK_URLS` (comma-separated). Default none. */
  alertWebhookUrls: string[];
  /** Their `whsec_` signing secret (`ALERT_WEBHOOK_SECRET`), required with them. Default none. */
  alertWebhookSecret: string | undefined;
  /** `backlog.high` when more deliveries than this wait… (`ALERT_BACKLOG`). Default 1000. */
  alertBacklog: number;
  /** …for this long, in ms (`ALERT_FOR_MS`). Default 300000 (5 min). */
  alertForMs: number;
  /** Timeout of one alert call, in ms; only a 2xx within it counts. Default 10000. */
  alertTimeoutMs: number;
  /** First alert retry delay ceiling, doubled per attempt (full jitter), in ms. Default 1000. */
  alertRetryBaseMs: number;
  /** An alert not delivered this long after it was raised is given up, in ms. Default 86400000 (24 h). */
  alertGiveUpAfterMs: number;
}

/** `ALERT_WEBHOOK_URLS`: http(s) URLs without credentials, separated by commas. */
function readAlertWebhookUrls(env: Env): string[] {
  const text = readString(env, 'ALERT_WEBHOOK_URLS', '');
  const urls = text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  return urls.map((entry) => {
    let url: URL | undefined;
    try {
      url = new URL(entry);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ConfigError(
        'ALERT_WEBHOOK_URLS',
        redactUrl(text),
        `${JSON.stringify(redactUrl(entry))} is not an http:// or https:// URL; give absolute URLs separated by commas`,
      );
    }
    if (url.username || url.password) {
      throw new ConfigError(
        'ALERT_WEBHOOK_URLS',
        redactUrl(text),
        'alert URLs must not contain credentials: the signature (ALERT_WEBHOOK_SECRET) authenticates calls',
      );
    }
    return url.toString();
  });
}

/** `ALERT_WEBHOOK_SECRET`: required with `ALERT_WEBHOOK_URLS`, a Standard Webhooks secret. */
function readAlertWebhookSecret(env: Env, urls: string[]): string | undefined {
  const secret = readOptionalString(env, 'ALERT_WEBHOOK_SECRET');
  if (secret !== undefined && !isSigningSecret(secret)) {
    throw new ConfigError(
      'ALERT_WEBHOOK_SECRET',
      '***',
      'use `whsec_` followed by at least 16 base64 characters, e.g. `whsec_$(openssl rand -base64 24)`',
    );
  }
  if (urls.length > 0 && secret === undefined) {
    throw new ConfigError(
      'ALERT_WEBHOOK_SECRET',
      '',
      'ALERT_WEBHOOK_URLS is set, so alerts need a signing secret: set ALERT_WEBHOOK_SECRET to `whsec_` followed by base64, e.g. `whsec_$(openssl rand -base64 24)`',
    );
  }
  return secret;
}

/** How long an instance's claim on deliveries lasts: a lease, and at least three call timeouts. */
export function claimMsOf(config: Pick<IntegrationConfig, 'leaseMs' | 'requestTimeoutMs'>): number {
  return Math.max(config.leaseMs, config.requestTimeoutMs * 3);
}

export function readIntegrationConfig(env: Env): IntegrationConfig {
  const http = ['http:', 'https:'];
  const ms = (name: string, fallback: number, min: number, max: number) =>
    readInteger(env, name, fallback, { min, max });
  const alertWebhookUrls = readAlertWebhookUrls(env);
  const config: IntegrationConfig = {
    crmUrl: readUrl(env, 'CRM_URL', 'http://127.0.0.1:8000', http)!.replace(/\/+$/, ''),
    inventoryUrl: readUrl(env, 'INVENTORY_URL', 'http://127.0.0.1:8001', http)!.replace(/\/+$/, ''),
    apiToken: readOptionalString(env, 'API_TOKEN'),
    syncMode: readChoice(env, 'SYNC_MODE', 'hybrid', SYNC_MODES),
    webhookUrl: readUrl(env, 'WEBHOOK_URL', undefined, http),
    amqpUrl: readUrl(env, 'AMQP_URL', undefined, ['amqp:', 'amqps:']),
    amqpNamePrefix: readString(env, 'AMQP_NAME_PREFIX', ''),
    amqpPrefetch: readInteger(env, 'AMQP_PREFETCH', 100, { min: 1, max: 10_000 }),
    pollIntervalMs: ms('POLL_INTERVAL_MS', 10_000, 50, 3_600_000),
    gapRepairMs: ms('GAP_REPAIR_MS', 5_000, 100, 3_600_000),
    pollBatchSize: readInteger(env, 'POLL_BATCH_SIZE', 500, { min: 1, max: 1000 }),
    deliveryConcurrency: readInteger(env, 'DELIVERY_CONCURRENCY', 8, { min: 1, max: 256 }),
    deliveryBatchSize: readInteger(env, 'DELIVERY_BATCH_SIZE', 250, {
      min: 1,
      max: BATCH_MAX_ITEMS,
    }),
    maxAttempts: readInteger(env, 'MAX_ATTEMPTS', 20, { min: 1, max: 1000 }),
    deadLetterAfterMs: ms('DEAD_LETTER_AFTER_MS', 3_600_000, 0, 30 * 86_400_000),
    retryBaseMs: ms('RETRY_BASE_MS', 500, 1, 3_600_000),
    retryMaxDelayMs: ms('RETRY_MAX_DELAY_MS', 300_000, 1, 86_400_000),
    requestTimeoutMs: ms('REQUEST_TIMEOUT_MS', 5_000, 10, 300_000),
    inventoryMaxRps: readInteger(env, 'INVENTORY_MAX_RPS', 0, { min: 0, max: 1_000_000 }),
    circuitResetMs: ms('CIRCUIT_RESET_MS', 5_000, 10, 3_600_000),
    leaseMs: ms('LEASE_MS', 30_000, 100, 3_600_000),
    instanceId: readInstanceId(env),
    retentionMs: 0,
    webhookTargets: readWebhookTargetSettings(
      env,
      isLoopbackHost(readString(env, 'HOST', '127.0.0.1')),
    ),
    alertWebhookUrls,
    alertWebhookSecret: readAlertWebhookSecret(env, alertWebhookUrls),
    alertBacklog: readInteger(env, 'ALERT_BACKLOG', 1000, { min: 1, max: 100_000_000 }),
    alertForMs: ms('ALERT_FOR_MS', 300_000, 0, 86_400_000),
    alertTimeoutMs: ms('ALERT_TIMEOUT_MS', 10_000, 100, 60_000),
    alertRetryBaseMs: ms('ALERT_RETRY_BASE_MS', 1_000, 1, 3_600_000),
    alertGiveUpAfterMs: ms('ALERT_GIVE_UP_AFTER_MS', 86_400_000, 1_000, 30 * 86_400_000),
  };
  const claimMs = claimMsOf(config);
  if (config.inventoryMaxRps > 0) {
    // Calls waiting for their turn hold their claims: the wait must stay well inside a claim.
    const waitMs = (config.deliveryConcurrency / config.inventoryMaxRps) * 1000;
    if (waitMs > claimMs / 2) {
      throw new ConfigError(
        'INVENTORY_MAX_RPS',
        String(config.inventoryMaxRps),
        `with DELIVERY_CONCURRENCY=${config.deliveryConcurrency} a call may wait ${Math.round(waitMs)} ms for its turn, past half a claim (${claimMs} ms); use at least ${Math.ceil((config.deliveryConcurrency * 2000) / claimMs)}, or lower DELIVERY_CONCURRENCY`,
      );
    }
  }
  // Pushed message ids must outlive every redelivery the retries can cause.
  config.retentionMs = readRetentionMs(
    env,
    config.deadLetterAfterMs,
    `a message can be redelivered until its delivery is dead-lettered (DEAD_LETTER_AFTER_MS=${config.deadLetterAfterMs})`,
  );
  if (config.syncMode === 'amqp' && !config.amqpUrl) {
    throw new ConfigError(
      'SYNC_MODE',
      'amqp',
      'amqp mode needs AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672)',
    );
  }
  return config;
}
