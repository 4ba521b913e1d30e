import { Agent, request } from 'undici';
import { parseRetryAfter } from '../core/backoff.js';
import { startDeadline } from '../core/deadline.js';
import type { CallThrottle } from '../core/call-throttle.js';
import { NonRetryableError, TransientError } from '../core/retryable-errors.js';

export interface HttpClientOptions {
  baseUrl: string;
  /** Sent as `Authorization: Bearer …` when set. */
  apiToken?: string | undefined;
  /** Per-call timeout in ms. */
  timeoutMs: number;
  /** Spaces the calls out (`INVENTORY_MAX_RPS`); the wait is not part of the timeout. Default none. */
  throttle?: Pick<CallThrottle, 'take'> | undefined;
}

export interface JsonResponse {
  status: number;
  /** The `Retry-After` header, when the answer had one. */
  retryAfter: string | undefined;
  body: unknown;
  /** The answer's headers, by lowercase name. */
  headers?: Record<string, string | string[] | undefined>;
}

/**
 * One keep-alive connection pool per process for every call to the CRM and Inventory: undici's
 * `request` skips the WHATWG streams `fetch` builds around each call, which cost as much CPU as
 * the rest of a delivery.
 */
const connections = new Agent({ keepAliveTimeout: 10_000, connections: 64 });

export async function callJson(
  options: HttpClientOptions,
  path: string,
  init: {
    method: 'GET' | 'POST' | 'PATCH';
    headers?: Record<string, string>;
    body?: unknown;
    signal?: AbortSignal;
    extraTimeoutMs?: number;
  },
): Promise<JsonResponse> {
  await options.throttle?.take(init.signal);
  const deadline = startDeadline(options.timeoutMs + (init.extraTimeoutMs ?? 0), init.signal);
  let status: number;
  let retryAfter: string | undefined;
  let headers: JsonResponse['headers'];
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
      signal: deadline.signal,
      dispatcher: connections,
    });
    status = response.statusCode;
    headers = response.headers;
    const header = response.headers['retry-after'];
    retryAfter = Array.isArray(header) ? header[0] : header;
    text = await response.body.text();
  } catch (error) {
    if (init.signal?.aborted) throw error;
    const failure = error as { code?: string; message?: string; cause?: { code?: string } };
    const reason = deadline.expired
      ? `timed out after ${options.timeoutMs} ms`
      : (failure.code ?? failure.cause?.code ?? failure.message ?? String(error));
    throw new TransientError(`${init.method} ${options.baseUrl}${path} failed: ${reason}`);
  } finally {
    deadline.clear();
  }
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  return { status, retryAfter, body, headers };
}

function describe(response: { status: number; body: unknown }): string {
  const body = response.body as { detail?: string } | undefined;
  const detail = typeof body === 'object' && body?.detail ? `: ${body.detail}` : '';
  return `HTTP ${response.status}${detail}`;
}

export function retryAfterOf(response: JsonResponse): number | undefined {
  return parseRetryAfter(response.retryAfter, Date.now());
}

/** Sorts an answer that is not a success into a retryable or a permanent failure. */
export function failureOf(
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
