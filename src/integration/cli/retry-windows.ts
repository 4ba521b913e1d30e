import { retryWindowMs } from '../../core/backoff.js';
import type { Env } from '../../core/config.js';
import { readCrmConfig } from '../../crm/config.js';
import { readIntegrationConfig } from '../config.js';

/** How long each retrying part of the platform keeps at a failure, with these settings. */
export interface RetryWindow {
  /** What retries, e.g. `integration → Inventory`. */
  what: string;
  attempts: number;
  longest_ms: number;
  mean_ms: number;
  /** What happens when the attempts are used up. */
  then: string;
}

/** The retry windows the settings in `env` give (the defaults where unset). */
export function retryWindows(env: Env): RetryWindow[] {
  const integration = readIntegrationConfig(env);
  const crm = readCrmConfig(env);
  const deliveries = retryWindowMs(integration.maxAttempts, {
    baseMs: integration.retryBaseMs,
    maxDelayMs: integration.retryMaxDelayMs,
  });
  const webhooks = retryWindowMs(crm.webhookMaxAttempts, {
    baseMs: crm.webhookRetryBaseMs,
    maxDelayMs: crm.webhookRetryMaxDelayMs,
  });
  return [
    {
      what: 'integration → Inventory (MAX_ATTEMPTS, RETRY_BASE_MS, RETRY_MAX_DELAY_MS)',
      attempts: integration.maxAttempts,
      // A delivery is dead-lettered only once it has also failed for DEAD_LETTER_AFTER_MS.
      longest_ms: Math.max(deliveries.longestMs, integration.deadLetterAfterMs),
      mean_ms: Math.max(deliveries.meanMs, integration.deadLetterAfterMs),
      then: 'dead letter, replayable (mip dlq replay)',
    },
    {
      what: 'CRM → webhook endpoint (WEBHOOK_MAX_ATTEMPTS, WEBHOOK_RETRY_BASE_MS, WEBHOOK_RETRY_MAX_DELAY_MS)',
      attempts: crm.webhookMaxAttempts,
      longest_ms: webhooks.longestMs,
      mean_ms: webhooks.meanMs,
      then: 'message failed, replayable (POST /webhook-endpoints/{id}/messages/replay); the integration service repairs from the feed',
    },
  ];
}

/** `8 h 8 min 15 s`, `45 s`, `0 s`. */
export function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  const parts = [
    [Math.floor(seconds / 3600), 'h'],
    [Math.floor((seconds % 3600) / 60), 'min'],
    [seconds % 60, 's'],
  ] as const;
  const shown = parts.filter(([value]) => value > 0).map(([value, unit]) => `${value} ${unit}`);
  return shown.join(' ') || '0 s';
}

/** The windows as lines for a terminal. */
export function formatRetryWindows(windows: RetryWindow[]): string {
  return windows
    .map(
      (window) =>
        `${window.what}\n  ${window.attempts} attempts over at most ${formatDuration(window.longest_ms)} (about ${formatDuration(window.mean_ms)} on average), then: ${window.then}`,
    )
    .join('\n');
}
