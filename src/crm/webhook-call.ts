import type { Selectable } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import type { CustomerEvent, CustomerEventWebhook } from '../contracts/customer-events.js';
import type { CrmTables } from './migrations.js';
import { StoredSecretError, type SecretsKeyring } from './secrets-at-rest.js';
import {
  checkWebhookTarget,
  lookupWebhookTarget,
  WebhookTargetError,
  type WebhookTargetPolicy,
} from './webhook-targets.js';

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

/** `webhook-signature`: one `v1,<base64>` per valid secret, space-separated (key rotation). */
export function signWebhook(secrets: string[], id: string, timestamp: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(id, timestamp, body)).join(' ');
}

/** What one call to an endpoint gave. */
export interface CallOutcome {
  status: number | null;
  /** null when the endpoint answered 2xx in time. */
  error: string | null;
  durationMs: number;
}

export interface WebhookCallerOptions {
  /** Where calls may go besides the public internet. */
  targets: WebhookTargetPolicy;
  /** Opens the stored signing secrets. */
  keyring: SecretsKeyring;
  /** Only a 2xx within this counts, in ms. */
  timeoutMs: number;
}

/** Makes signed webhook calls over keep-alive connections that only reach admitted addresses. */
export class WebhookCaller {
  /** Shared by every call (undici's request, no streams). */
  private readonly connections: Agent;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: WebhookCallerOptions) {
    this.connections = new Agent({
      keepAliveTimeout: 10_000,
      connections: 64,
      // The addresses connected to are checked too, not only those the URL resolved to earlier.
      connect: { lookup: lookupWebhookTarget(options.targets) },
    });
  }

  /** One signed POST of `event` to `endpoint`; never throws (a failure is the outcome). */
  async call(
    endpoint: EndpointRow,
    event: CustomerEvent,
    now: number,
    abandoned?: AbortSignal,
  ): Promise<CallOutcome> {
    const { keyring, targets, timeoutMs } = this.options;
    const body = webhookBody(event);
    const started = performance.now();
    let status: number | null = null;
    let error: string | null = null;
    try {
      const secrets = [keyring.open(endpoint.secret, endpoint.id)];
      if (endpoint.previous_secret && (endpoint.previous_secret_expires_at ?? 0) > now) {
        secrets.push(keyring.open(endpoint.previous_secret, endpoint.id));
      }
      await checkWebhookTarget(endpoint.url, targets);
      // No redirect is followed (undici's default): it could lead to a refused address.
      const response = await request(endpoint.url, {
        method: 'POST',
        dispatcher: this.connections,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'mini-integration-platform-crm',
          'webhook-id': event.id,
          'webhook-timestamp': String(Math.floor(now / 1000)),
          'webhook-signature': signWebhook(secrets, event.id, new Date(now), body),
          ...(event.traceparent ? { traceparent: event.traceparent } : {}),
        },
        body,
        signal: abandoned
          ? AbortSignal.any([abandoned, AbortSignal.timeout(timeoutMs)])
          : AbortSignal.timeout(timeoutMs),
      });
      status = response.statusCode;
      await response.body.dump();
      if (status < 200 || status >= 300) error = `HTTP ${status}`;
    } catch (caught) {
      const failure = caught as { name?: string; code?: string; cause?: { code?: string } };
      // Refusals (of a target, of a stored secret) say what to change; network errors have a code.
      error =
        failure.name === 'TimeoutError'
          ? `no answer within ${timeoutMs} ms`
          : caught instanceof WebhookTargetError || caught instanceof StoredSecretError
            ? caught.message
            : (failure.code ?? failure.cause?.code ?? (caught as Error).message);
    }
    return { status, error, durationMs: Math.round(performance.now() - started) };
  }

  /** Closes the connections; safe to call more than once. */
  async close(): Promise<void> {
    this.closing ??= this.connections.close();
    await this.closing;
  }
}
