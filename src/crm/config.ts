import {
  isLoopbackHost,
  readInstanceId,
  readInteger,
  readString,
  readUrl,
  type Env,
} from '../core/config.js';
import type { PrivateTargetAllowList } from '../core/webhooks/private-target-allow-list.js';
import { readWebhookTargetSettings } from '../core/webhooks/target-settings.js';
import { readSecretsKeys, type SecretsKeyring } from './secrets-at-rest.js';

/** The CRM's own settings; every default is what `npm start` uses. */
export interface CrmConfig {
  /** `HOST` is a loopback address: only this machine can reach the CRM. Default true. */
  loopbackOnly: boolean;
  /**
   * Deliver webhooks to private, loopback and reserved addresses (never link-local nor cloud
   * metadata ones). Default: only while the CRM listens on loopback.
   */
  allowPrivateWebhookTargets: boolean;
  /** Private webhook targets admitted by host[:port] or CIDR block. Default none. */
  allowedPrivateWebhookTargets: PrivateTargetAllowList;
  /** Keys that encrypt webhook signing secrets in the database. Default none: stored in clear. */
  secretsKeys: SecretsKeyring;
  /** Timeout of one webhook call, in ms; only a 2xx within it counts. Default 10000. */
  webhookTimeoutMs: number;
  /** Webhook calls in flight at once, in two batches. Default 64. */
  webhookConcurrency: number;
  /** Attempts per message before it is marked failed. Default 20. */
  webhookMaxAttempts: number;
  /** Ceiling of the first retry delay, doubled per attempt (full jitter), in ms. Default 1000. */
  webhookRetryBaseMs: number;
  /** Largest retry delay, in ms. Default 3600000 (1 h). */
  webhookRetryMaxDelayMs: number;
  /** An endpoint whose every call has failed for this long is disabled, in ms. Default 5 days. */
  webhookDisableAfterMs: number;
  /** RabbitMQ URL; when set, every event is also published to the `crm.events` exchange. Default none. */
  amqpUrl: string | undefined;
  /** This process's name in the relay lease (`INSTANCE_ID`). Default `<hostname>-<pid>`. */
  instanceId: string;
  /** Prefix of every exchange and queue name, to share a broker. Default none. */
  amqpNamePrefix: string;
}

export function readCrmConfig(env: Env): CrmConfig {
  const loopbackOnly = isLoopbackHost(readString(env, 'HOST', '127.0.0.1'));
  const targets = readWebhookTargetSettings(env, loopbackOnly);
  const ms = (name: string, fallback: number, min: number, max: number) =>
    readInteger(env, name, fallback, { min, max });
  return {
    loopbackOnly,
    allowPrivateWebhookTargets: targets.allowPrivate,
    allowedPrivateWebhookTargets: targets.allowList,
    secretsKeys: readSecretsKeys(env),
    webhookTimeoutMs: ms('WEBHOOK_TIMEOUT_MS', 10_000, 100, 60_000),
    webhookConcurrency: readInteger(env, 'WEBHOOK_CONCURRENCY', 64, { min: 1, max: 256 }),
    webhookMaxAttempts: readInteger(env, 'WEBHOOK_MAX_ATTEMPTS', 20, { min: 1, max: 100 }),
    webhookRetryBaseMs: ms('WEBHOOK_RETRY_BASE_MS', 1_000, 1, 3_600_000),
    webhookRetryMaxDelayMs: ms('WEBHOOK_RETRY_MAX_DELAY_MS', 3_600_000, 1, 86_400_000),
    webhookDisableAfterMs: ms('WEBHOOK_DISABLE_AFTER_MS', 5 * 86_400_000, 0, 30 * 86_400_000),
    amqpUrl: readUrl(env, 'AMQP_URL', undefined, ['amqp:', 'amqps:']),
    amqpNamePrefix: readString(env, 'AMQP_NAME_PREFIX', ''),
    instanceId: readInstanceId(env),
  };
}
