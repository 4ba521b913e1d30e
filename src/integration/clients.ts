import { Agent, request } from 'undici';
import { parseRetryAfter } from '../core/backoff.js';
import { NonRetryableError, TransientError } from '../core/retryable-errors.js';
import { parseFeedPage, type FeedEvent } from '../contracts/customer-events.js';
import type {
  NewWebhookEndpointAnswer,
  WebhookEndpoint,
  WebhookSecrets,
} from '../contracts/webhook-endpoints.js';
import {
  DEFAULT_KIND,
  isBatchAnswer,
  isCreatedAnswer,
  isExistingRequestAnswer,
  isInFlightAnswer,
  type BatchRequest,
  type NewPackageRequest,
} from '../contracts/package-requests.js';

export interface HttpClientOptions {
  baseUrl: string;
  /** Sent as `Authorization: Bearer …` when set. */
  apiToken?: string | undefined;
  /** Per-call timeout in ms. */
  timeoutMs: number;
}

interface JsonResponse {
  status: number;
  /** The `Retry-After` header, when the answer had one. */
  retryAfter: string | undefined;
  body: unknown;
}

/**
 * One keep-alive connection pool per process for every call to the CRM and Inventory: undici's
 * `request` skips the WHATWG streams `fetch` builds around each call, which cost as much CPU as
 * the rest of a delivery.
 */
const connections = new Agent({ keepAliveTimeout: 10_000, connections: 64 });

async function callJson(
  options: HttpClientOptions,
  path: string,
  init: {
    method: 'GET' | 'POST';
    headers?: Record<string, string>;
    body?: unknown;
    signal?: AbortSignal;
    extraTimeoutMs?: number;
  },
): Promise<JsonResponse> {
  const timeout = AbortSignal.timeout(options.timeoutMs + (init.extraTimeoutMs ?? 0));
  const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
  let status: number;
  let retryAfter: string | undefined;
  let text: string;
  try {
    // No redirects are followed (undici's default): a 3xx is an answer, not a destination.
    const response = await request(options.baseUrl + path, {
      method: init.method,
      headers: {
        accept: 'application/json',
        ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(options.apiToken ? { authorization: `Bearer ${options.apiToken}` } : {}),
        ...init.headers,
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal,
      dispatcher: connections,
    });
    status = response.statusCode;
    const header = response.headers['retry-after'];
    retryAfter = Array.isArray(header) ? header[0] : header;
    text = await response.body.text();
  } catch (error) {
    if (init.signal?.aborted) throw error;
    const failure = error as { code?: string; message?: string; cause?: { code?: string } };
    const reason = timeout.aborted
      ? `timed out after ${options.timeoutMs} ms`
      : (failure.code ?? failure.cause?.code ?? failure.message ?? String(error));
    throw new TransientError(`${init.method} ${options.baseUrl}${path} failed: ${reason}`);
  }
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  return { status, retryAfter, body };
}

function describe(response: { status: number; body: unknown }): string {
  const body = response.body as { detail?: string } | undefined;
  const detail = typeof body === 'object' && body?.detail ? `: ${body.detail}` : '';
  return `HTTP ${response.status}${detail}`;
}

function retryAfterOf(response: JsonResponse): number | undefined {
  return parseRetryAfter(response.retryAfter, Date.now());
}

/** Sorts an answer that is not a success into a retryable or a permanent failure. */
function failureOf(
  response: JsonResponse | { status: number; body: unknown; retryAfterMs: number | undefined },
  what: string,
): Error {
  const retryAfterMs = 'retryAfterMs' in response ? response.retryAfterMs : retryAfterOf(response);
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

/** A welcome package to ask for, with the trace context of the customer's creation. */
export interface WelcomePackage {
  customerId: string;
  traceparent?: string | undefined;
}

const welcomePackageRequest = (customerId: string) => {
  const body: NewPackageRequest = { customer_id: customerId, kind: DEFAULT_KIND };
  return { idempotency_key: `welcome-package:${customerId}`, body };
};

/**
 * Reads Inventory's answer for one item (from the single endpoint or one result of the batch
 * endpoint): a receipt, or the error to record.
 */
function receiptOf(
  customerId: string,
  status: number,
  body: unknown,
  retryAfterMs: number | undefined,
): PackageRequestReceipt | Error {
  if (status === 201 && isCreatedAnswer.Check(body)) {
    return { packageRequestId: body.id, created: true };
  }
  if (status === 409 && isExistingRequestAnswer.Check(body)) {
    return { packageRequestId: body.existing_request.id, created: false };
  }
  if (status === 409 && isInFlightAnswer.Check(body)) {
    // Our own earlier call is still running there: ask again later.
    return new TransientError(
      `Inventory is still processing an earlier call for customer ${customerId}`,
      409,
      retryAfterMs,
    );
  }
  return failureOf({ status, body, retryAfterMs }, 'Inventory');
}

/** Calls Inventory: one welcome package per customer, made safe to retry by its Idempotency-Key. */
export class InventoryClient {
  constructor(private readonly options: HttpClientOptions) {}

  /** Asks for one welcome package; throws the failure, whatever it is. */
  async createWelcomePackage(
    customerId: string,
    headers: Record<string, string> = {},
  ): Promise<PackageRequestReceipt> {
    const receipt = await this.postOne(customerId, headers);
    if (receipt instanceof Error) throw receipt;
    return receipt;
  }

  private async postOne(
    customerId: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<PackageRequestReceipt | Error> {
    const request = welcomePackageRequest(customerId);
    const response = await callJson(this.options, '/package-requests', {
      method: 'POST',
      headers: { 'idempotency-key': request.idempotency_key, ...headers },
      body: request.body,
      signal,
    });
    return receiptOf(customerId, response.status, response.body, retryAfterOf(response));
  }

  /**
   * Asks for many welcome packages in one call (`POST /package-requests/batch`, at most
   * BATCH_MAX_ITEMS), each item under its own idempotency key. Throws when the call as a whole
   * failed; otherwise answers, per customer in order, a receipt or that item's error.
   */
  async createWelcomePackages(
    customerIds: string[],
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<(PackageRequestReceipt | Error)[]> {
    if (customerIds.length === 1) {
      // One item (the usual case when events are pushed): the plain endpoint, the smallest call.
      const answer = await this.postOne(customerIds[0]!, headers, signal);
      if (answer instanceof TransientError && answer.status !== 409) throw answer;
      return [answer];
    }
    const body: BatchRequest = {
      items: customerIds.map((customerId) => {
        const request = welcomePackageRequest(customerId);
        return { ...request.body, idempotency_key: request.idempotency_key };
      }),
    };
    const response = await callJson(this.options, '/package-requests/batch', {
      method: 'POST',
      headers,
      body,
      signal,
    });
    if (response.status !== 200 || !isBatchAnswer.Check(response.body)) {
      throw failureOf(response, 'Inventory');
    }
    const { results } = response.body;
    if (results.length !== customerIds.length) {
      throw new TransientError(
        `Inventory answered ${results.length} results for ${customerIds.length} items`,
      );
    }
    const retryAfterMs = retryAfterOf(response);
    return customerIds.map((customerId, index) =>
      receiptOf(customerId, results[index]!.status, results[index]!.body, retryAfterMs),
    );
  }
}

/** Reads the CRM's change feed and manages this service's webhook subscription. */
export class CrmClient {
  constructor(private readonly options: HttpClientOptions) {}

  private async expect<T>(
    status: number,
    path: string,
    method: 'GET' | 'POST' = 'GET',
  ): Promise<T> {
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

  async createWebhookEndpoint(url: string): Promise<NewWebhookEndpointAnswer> {
    const response = await callJson(this.options, '/webhook-endpoints', {
      method: 'POST',
      body: { url },
    });
    if (response.status !== 201) throw failureOf(response, 'CRM');
    return response.body as NewWebhookEndpointAnswer;
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
  ): Promise<FeedEvent[]> {
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
    const page = parseFeedPage(response.body);
    if (!page.ok) {
      throw new TransientError(
        `The CRM's feed answered events this service cannot read: ${page.problems.join('; ')}`,
      );
    }
    return page.value;
  }
}
