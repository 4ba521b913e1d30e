import { ConfigError, readChoice, readString, type Env } from '../config.js';
import {
  AllowListEntryError,
  ALLOW_LIST_FORMS,
  PrivateTargetAllowList,
} from './private-target-allow-list.js';

/** Where a service's outgoing webhooks may go besides the public internet, as configured. */
export interface WebhookTargetSettings {
  /**
   * `WEBHOOK_ALLOW_PRIVATE_TARGETS`: deliver to private, loopback and reserved addresses (never
   * link-local nor cloud metadata ones). Default: only while the service listens on loopback.
   */
  allowPrivate: boolean;
  /** `WEBHOOK_ALLOWED_PRIVATE_TARGETS`: private targets admitted by host[:port] or CIDR block. Default none. */
  allowList: PrivateTargetAllowList;
}

function readAllowList(env: Env): PrivateTargetAllowList {
  const text = readString(env, 'WEBHOOK_ALLOWED_PRIVATE_TARGETS', '');
  try {
    return PrivateTargetAllowList.parse(text);
  } catch (error) {
    if (!(error instanceof AllowListEntryError)) throw error;
    throw new ConfigError(
      'WEBHOOK_ALLOWED_PRIVATE_TARGETS',
      text,
      `${JSON.stringify(error.entry)} is not an entry: ${ALLOW_LIST_FORMS}; separate entries with commas`,
    );
  }
}

/**
 * Reads `WEBHOOK_ALLOW_PRIVATE_TARGETS` and `WEBHOOK_ALLOWED_PRIVATE_TARGETS`, shared by every
 * service that calls webhooks (the CRM's events, the integration service's alerts).
 */
export function readWebhookTargetSettings(env: Env, loopbackOnly: boolean): WebhookTargetSettings {
  return {
    allowPrivate:
      readChoice(env, 'WEBHOOK_ALLOW_PRIVATE_TARGETS', loopbackOnly ? 'true' : 'false', [
        'true',
        'false',
      ]) === 'true',
    allowList: readAllowList(env),
  };
}
