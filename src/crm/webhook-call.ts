import type { Selectable } from 'kysely';
import type { CustomerEvent, CustomerEventWebhook } from '../contracts/customer-events.js';
import { SignedWebhookCaller, type CallOutcome } from '../core/webhooks/signed-call.js';
import type { WebhookTargetPolicy } from '../core/webhooks/targets.js';
import type { CrmTables } from './migrations.js';
import { StoredSecretError, type SecretsKeyring } from './secrets-at-rest.js';

type EndpointRow = Selectable<CrmTables['webhook_endpoints']>;

/**
 * The Standard Webhooks body: the event's type, when it happened, its feed position, its data, and
 * an update's changed fields. That is the event itself, `occurred_at` named `timestamp`, without its
 * id and trace context, which go in headers (`webhook-id`, `traceparent`).
 */
export function webhookBody(event: CustomerEvent): string {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- left out of the body, named to drop them
  const { id, traceparent, occurred_at: timestamp, ...rest } = event;
  const payload: CustomerEventWebhook = { ...rest, timestamp };
  return JSON.stringify(payload);
}

export interface WebhookCallerOptions {
  /** Where calls may go besides the public internet. */
  targets: WebhookTargetPolicy;
  /** Opens the stored signing secrets. */
  keyring: SecretsKeyring;
  /** Only a 2xx within this counts, in ms. */
  timeoutMs: number;
}

/** Makes the CRM's signed event webhook calls, with each endpoint's stored secrets. */
export class WebhookCaller {
  private readonly caller: SignedWebhookCaller;

  constructor(private readonly options: WebhookCallerOptions) {
    this.caller = new SignedWebhookCaller({
      targets: options.targets,
      timeoutMs: options.timeoutMs,
      userAgent: 'mini-integration-platform-crm',
    });
  }

  /** One signed POST of `event` to `endpoint`; never throws (a failure is the outcome). */
  async call(
    endpoint: EndpointRow,
    event: CustomerEvent,
    now: number,
    abandoned?: AbortSignal,
  ): Promise<CallOutcome> {
    const { keyring } = this.options;
    let secrets: string[];
    try {
      secrets = [keyring.open(endpoint.secret, endpoint.id)];
      if (endpoint.previous_secret && (endpoint.previous_secret_expires_at ?? 0) > now) {
        secrets.push(keyring.open(endpoint.previous_secret, endpoint.id));
      }
    } catch (caught) {
      // A refusal to open a stored secret says which key or setting is missing.
      if (!(caught instanceof StoredSecretError)) throw caught;
      return { status: null, error: caught.message, durationMs: 0 };
    }
    const message = {
      url: endpoint.url,
      id: event.id,
      body: webhookBody(event),
      secrets,
      headers: event.traceparent
        ? { traceparent: event.traceparent }
        : ({} as Record<string, string>),
    };
    return this.caller.call(message, now, abandoned);
  }

  /** Closes the connections; safe to call more than once. */
  close(): Promise<void> {
    return this.caller.close();
  }
}
