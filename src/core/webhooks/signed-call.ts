import { Agent, request } from 'undici';
import { startDeadline, type CallDeadline } from '../deadline.js';
import { signWebhook } from './signing.js';
import {
  checkWebhookTarget,
  lookupWebhookTarget,
  WebhookTargetError,
  type WebhookTargetPolicy,
} from './targets.js';

/** What one call to an endpoint gave. */
export interface CallOutcome {
  status: number | null;
  /** null when the endpoint answered 2xx in time. */
  error: string | null;
  durationMs: number;
}

/** One signed message to one endpoint. */
export interface SignedMessage {
  url: string;
  /** `webhook-id`: the message's id, the same on every retry, for receivers to deduplicate. */
  id: string;
  body: string;
  /** Every secret to sign with (two during a key rotation). */
  secrets: string[];
  /** Further headers, e.g. `traceparent`. */
  headers?: Record<string, string>;
}

export interface SignedWebhookCallerOptions {
  /** Where calls may go besides the public internet. */
  targets: WebhookTargetPolicy;
  /** Only a 2xx within this counts, in ms. */
  timeoutMs: number;
  /** The `user-agent` header, naming the calling service. */
  userAgent: string;
}

/** Words for a failed call that say what went wrong: a refusal's reason, a timeout, a code. */
export function describeCallFailure(caught: unknown, timeoutMs: number): string {
  const failure = caught as { name?: string; code?: string; cause?: { code?: string } };
  if (failure.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  if (caught instanceof WebhookTargetError) return caught.message;
  return failure.code ?? failure.cause?.code ?? (caught as Error).message;
}

/**
 * Makes Standard Webhooks calls (signed POSTs of JSON) over keep-alive connections that only
 * reach admitted addresses: the CRM's event webhooks and the integration service's alerts.
 */
export class SignedWebhookCaller {
  /** Shared by every call (undici's request, no streams). */
  private readonly connections: Agent;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: SignedWebhookCallerOptions) {
    this.connections = new Agent({
      keepAliveTimeout: 10_000,
      connections: 64,
      // The addresses connected to are checked too, not only those the URL resolved to earlier.
      connect: { lookup: lookupWebhookTarget(options.targets) },
    });
  }

  /** One signed POST of `message` at `now`; never throws (a failure is the outcome). */
  async call(message: SignedMessage, now: number, abandoned?: AbortSignal): Promise<CallOutcome> {
    const { targets, timeoutMs, userAgent } = this.options;
    const started = performance.now();
    let status: number | null = null;
    let error: string | null = null;
    let deadline: CallDeadline | undefined;
    try {
      await checkWebhookTarget(message.url, targets);
      // From the call on, as before: the target's lookup is not part of the time limit.
      deadline = startDeadline(timeoutMs, abandoned);
      // No redirect is followed (undici's default): it could lead to a refused address.
      const response = await request(message.url, {
        method: 'POST',
        dispatcher: this.connections,
        headers: {
          'content-type': 'application/json',
          'user-agent': userAgent,
          'webhook-id': message.id,
          'webhook-timestamp': String(Math.floor(now / 1000)),
          'webhook-signature': signWebhook(
            message.secrets,
            message.id,
            new Date(now),
            message.body,
          ),
          ...message.headers,
        },
        body: message.body,
        signal: deadline.signal,
      });
      status = response.statusCode;
      await response.body.dump();
      if (status < 200 || status >= 300) error = `HTTP ${status}`;
    } catch (caught) {
      error = describeCallFailure(caught, timeoutMs);
    } finally {
      deadline?.clear();
    }
    return { status, error, durationMs: Math.round(performance.now() - started) };
  }

  /** Closes the connections; safe to call more than once. */
  async close(): Promise<void> {
    this.closing ??= this.connections.close();
    await this.closing;
  }
}
