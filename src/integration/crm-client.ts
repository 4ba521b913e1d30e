import { TransientError } from '../core/retryable-errors.js';
import { parseFeedPage, type FeedEvent } from '../contracts/customer-events.js';
import {
  isCustomerState,
  isCustomerStatePage,
  type CustomerState,
} from '../contracts/customer-states.js';
import type {
  NewWebhookEndpointAnswer,
  WebhookEndpoint,
  WebhookSecrets,
} from '../contracts/webhook-endpoints.js';
import { callJson, failureOf, type HttpClientOptions } from './http-client.js';

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

  /** The id of the customer who has `email` (in any letter case); undefined when none has. */
  async findCustomerIdByEmail(email: string): Promise<string | undefined> {
    const found = await this.expect<{ id: string }[]>(
      200,
      `/customers?email=${encodeURIComponent(email)}`,
    );
    return found[0]?.id;
  }

  /** Up to `limit` customers, live or deleted, whose id sorts after `after` (audits). */
  async customerStates(after: string | undefined, limit: number): Promise<CustomerState[]> {
    const query = `limit=${limit}${after === undefined ? '' : `&after=${after}`}`;
    const page = await this.expect<unknown>(200, `/customer-states?${query}`);
    if (!isCustomerStatePage.Check(page)) {
      throw new TransientError('The CRM listed customer states this service cannot read');
    }
    return page;
  }

  /** How many customers the CRM knows, live or deleted. */
  async customerCount(): Promise<number> {
    const response = await callJson(this.options, '/customer-states?limit=1', { method: 'GET' });
    const total = Number(response.headers?.['x-total-count']);
    if (response.status !== 200 || !Number.isSafeInteger(total)) throw failureOf(response, 'CRM');
    return total;
  }

  /** The customer live or deleted; undefined when the CRM never had it. */
  async customerState(id: string): Promise<CustomerState | undefined> {
    const response = await callJson(this.options, `/customer-states/${id}`, { method: 'GET' });
    if (response.status === 404) return undefined;
    if (response.status !== 200) throw failureOf(response, 'CRM');
    if (!isCustomerState.Check(response.body)) {
      throw new TransientError(
        `The CRM answered a state of customer ${id} this service cannot read`,
      );
    }
    return response.body;
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
