import { parseRetryAfter } from '../core/backoff.js';

/** A failure worth retrying: network error, timeout, 5xx, 429, or an answer still in progress. */
export class TransientError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'TransientError';
  }
}

/** A failure retrying cannot fix (a 4xx other than 429): the item goes to the dead letters. */
export class NonRetryableError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'NonRetryableError';
  }
}

export interface HttpClientOptions {
  baseUrl: string;
  /** Sent as `Authorization: Bearer …` when set. */
  apiToken?: string | undefined;
  /** Per-call timeout in ms. */
  timeoutMs: number;
}

interface JsonResponse {
  status: number;
  headers: Headers;
  body: unknown;
}

async function callJson(
  options: HttpClientOptions,
  path: string,
  init: {
    method: string;
    headers?: Record<string, string>;
    body?: unknown;
    signal?: AbortSignal;
    extraTimeoutMs?: number;
  },
): Promise<JsonResponse> {
  const timeout = AbortSignal.timeout(options.timeoutMs + (init.extraTimeoutMs ?? 0));
  const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
  let response: Response;
  try {
    response = await fetch(options.baseUrl + path, {
      method: init.method,
      headers: {
        accept: 'application/json',
        ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(options.apiToken ? { authorization: `Bearer ${options.apiToken}` } : {}),
        ...init.headers,
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal,
      redirect: 'error',
    });
  } catch (error) {
    if (init.signal?.aborted) throw error;
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const reason = timeout.aborted
      ? `timed out after ${options.timeoutMs} ms`
      : (cause?.code ?? cause?.message ?? (error as Error).message);
    throw new TransientError(`${init.method} ${options.baseUrl}${path} failed: ${reason}`);
  }
  let body: unknown;
  const text = await response.text().catch(() => '');
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  return { status: response.status, headers: response.headers, body };
}

function describe(response: JsonResponse): string {
  const body = response.body as { detail?: string } | undefined;
  const detail = typeof body === 'object' && body?.detail ? `: ${body.detail}` : '';
  return `HTTP ${response.status}${detail}`;
}

/** Sorts an answer that is not a success into a retryable or a permanent failure. */
function failureOf(response: JsonResponse, what: string): Error {
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), Date.now());
  if (response.status === 429 || response.status >= 500) {
    return new TransientError(
      `${what} answered ${describe(response)}`,
      response.status,
      retryAfterMs,
    );
  }
  return new NonRetryableError(`${what} answered ${describe(response)}`, response.status);
}

export interface PackageRequestReceipt {
  packageRequestId: string;
  /** False when Inventory already had the request (a duplicate 409): still done. */
  created: boolean;
}

/** Calls Inventory: one welcome package per customer, made safe to retry by its Idempotency-Key. */
export class InventoryClient {
  constructor(private readonly options: HttpClientOptions) {}

  async createWelcomePackage(
    customerId: string,
    headers: Record<string, string> = {},
  ): Promise<PackageRequestReceipt> {
    const response = await callJson(this.options, '/package-requests', {
      method: 'POST',
      headers: { 'idempotency-key': `welcome-package:${customerId}`, ...headers },
      body: { customer_id: customerId, kind: 'welcome_package' },
    });
    const body = response.body as {
      id?: string;
      code?: string;
      existing_request?: { id: string };
    };
    if (response.status === 201 && body?.id) return { packageRequestId: body.id, created: true };
    if (
      response.status === 409 &&
      body?.code === 'package_request_exists' &&
      body.existing_request
    ) {
      return { packageRequestId: body.existing_request.id, created: false };
    }
    if (response.status === 409 && body?.code === 'idempotency_key_in_flight') {
      // Our own earlier call is still running there: ask again later.
      throw new TransientError(
        `Inventory is still processing an earlier call for customer ${customerId}`,
        409,
        parseRetryAfter(response.headers.get('retry-after'), Date.now()),
      );
    }
    throw failureOf(response, 'Inventory');
  }
}

export interface CustomerCreatedEvent {
  position: number;
  id: string;
  type: 'customer.created';
  occurred_at: string;
  data: { id: string; name: string; email: string; created_at: string };
  traceparent?: string | null;
}

export interface WebhookEndpoint {
  id: string;
  url: string;
  status: 'active' | 'disabled';
}

export interface WebhookSecrets {
  secret: string;
  previous_secret: string | null;
}

/** Reads the CRM's change feed and manages this service's webhook subscription. */
export class CrmClient {
  constructor(private readonly options: HttpClientOptions) {}

  private async expect<T>(status: number, path: string, method = 'GET'): Promise<T> {
    const response = await callJson(this.options, path, {
      method,
      ...(method === 'POST' ? { body: {} } : {}),
    });
    if (response.status !== status) throw failureOf(response, 'CRM');
    return response.body as T;
  }

  listWebhookEndpoints(): Promise<WebhookEndpoint[]> {
    return this.expect(200, '/webhook-endpoints');
  }

  async createWebhookEndpoint(url: string): Promise<WebhookEndpoint & WebhookSecrets> {
    const response = await callJson(this.options, '/webhook-endpoints', {
      method: 'POST',
      body: { url },
    });
    if (response.status !== 201) throw failureOf(response, 'CRM');
    return response.body as WebhookEndpoint & WebhookSecrets;
  }

  webhookSecrets(id: string): Promise<WebhookSecrets> {
    return this.expect(200, `/webhook-endpoints/${id}/secret`);
  }

  enableWebhookEndpoint(id: string): Promise<WebhookEndpoint> {
    return this.expect(200, `/webhook-endpoints/${id}/enable`, 'POST');
  }

  /** Events after `position`; with `waitMs`, the CRM holds an empty answer up to that long. */
  async readEvents(
    position: number,
    limit: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<CustomerCreatedEvent[]> {
    const response = await callJson(
      this.options,
      `/events?after=${position}&limit=${limit}&wait=${waitMs}`,
      {
        method: 'GET',
        signal,
        extraTimeoutMs: waitMs,
      },
    );
    if (response.status !== 200 || !Array.isArray(response.body)) throw failureOf(response, 'CRM');
    return response.body as CustomerCreatedEvent[];
  }
}
