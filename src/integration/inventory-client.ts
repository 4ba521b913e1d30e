import { TransientError } from '../core/retryable-errors.js';
import {
  DEFAULT_KIND,
  isBatchAnswer,
  isConflictWithRequestAnswer,
  isInFlightAnswer,
  isKeyReusedAnswer,
  isPackageRequestPage,
  isRequestStateAnswer,
  type PackageRequest,
  type BatchItem,
  type BatchRequest,
  type RequestState,
} from '../contracts/package-requests.js';
import { callJson, failureOf, retryAfterOf, type HttpClientOptions } from './http-client.js';

const PATH = '/package-requests';

/** The recipient a package is sent to: the customer's latest name and email. */
interface Recipient {
  customerId: string;
  /** The customer version the name and email come from. */
  version: number;
  name: string;
  email: string | null;
}

/**
 * One thing to make Inventory do for a customer: `create` its welcome package, `update` the
 * package's recipient, `cancel` it, or `fence` it. A fence is for a deleted customer whose create
 * may have committed with no answer recorded, or may still be on its way: the create again, under
 * the same idempotency key, with nothing personal. Either it makes the package now, or that create
 * got there first (the key's other body is refused, and the package is looked up); so there is one
 * package to cancel, and a create arriving later is refused.
 */
export type PackageChange = (
  | ({ op: 'create' } & Recipient)
  | ({ op: 'update'; id: string } & Recipient)
  | { op: 'cancel'; id: string; customerId: string }
  | { op: 'fence'; customerId: string; version: number }
) & {
  /** How many times an audit or resync sent the customer through again. Default 0. */
  repair?: number;
};

/**
 * What Inventory holds for the customer after the call: its welcome package request as it now
 * stands (null: it has none), and whether this call created it.
 */
export interface FoundRequest {
  request: RequestState | null;
  created: boolean;
}

/**
 * Idempotency keys: a retry of the same change is recognised; a newer version is a new change, and
 * so is a repair (Inventory lost or changed what an earlier answer, stored under the key, says).
 */
const keyOf = (change: PackageChange): string =>
  change.repair ? `${baseKeyOf(change)}:repair-${change.repair}` : baseKeyOf(change);

const baseKeyOf = (change: PackageChange): string => {
  switch (change.op) {
    case 'create':
    case 'fence':
      // One key per customer, as first specified: a create with a newer recipient under it is
      // refused as a reuse (422), and the package it made is looked up instead.
      return `welcome-package:${change.customerId}`;
    case 'update':
      return `package-update:${change.id}:v${change.version}`;
    case 'cancel':
      return `package-cancel:${change.id}`;
  }
};

const recipientFields = (recipient: Recipient) => ({
  recipient_name: recipient.name,
  ...(recipient.email === null ? {} : { recipient_email: recipient.email }),
  customer_version: recipient.version,
});

/** The body of the change's single route (a cancel has none). */
function bodyOf(change: PackageChange) {
  switch (change.op) {
    case 'create':
      return { customer_id: change.customerId, kind: DEFAULT_KIND, ...recipientFields(change) };
    case 'fence':
      return {
        customer_id: change.customerId,
        kind: DEFAULT_KIND,
        customer_version: change.version,
      };
    case 'update':
      return recipientFields(change);
    case 'cancel':
      return {};
  }
}

/** The change as an item of `POST /package-requests/batch`. */
function batchItemOf(change: PackageChange): BatchItem {
  const idempotency_key = keyOf(change);
  switch (change.op) {
    case 'create':
    case 'fence':
      return { op: 'create', ...bodyOf(change), idempotency_key } as BatchItem;
    case 'update':
      return { op: 'update', id: change.id, ...bodyOf(change), idempotency_key } as BatchItem;
    case 'cancel':
      return { op: 'cancel', id: change.id, idempotency_key };
  }
}

/**
 * Reads Inventory's answer about one change (from its single route or one result of the batch):
 * the request as it now stands, or the error to record. Every conflict that shows the request
 * (it exists already, a newer version is there, it shipped or was cancelled) is an answer, not a
 * failure: what to do next depends on the customer's state, which the caller knows.
 */
function foundOf(
  change: PackageChange,
  status: number,
  body: unknown,
  retryAfterMs: number | undefined,
): FoundRequest | Error {
  if ((status === 200 || status === 201) && isRequestStateAnswer.Check(body)) {
    return { request: body, created: status === 201 };
  }
  if (status === 409 && isConflictWithRequestAnswer.Check(body)) {
    return {
      request: 'existing_request' in body ? body.existing_request : body.package_request,
      created: false,
    };
  }
  if (status === 409 && isInFlightAnswer.Check(body)) {
    // Our own earlier call is still running there: ask again later.
    return new TransientError(
      `Inventory is still processing an earlier call for customer ${change.customerId}`,
      409,
      retryAfterMs,
    );
  }
  return failureOf({ status, body, retryAfterMs }, 'Inventory');
}

/** A create refused because its key was used for another recipient: the package exists. */
const isReusedCreate = (change: PackageChange, status: number, body: unknown) =>
  (change.op === 'create' || change.op === 'fence') &&
  status === 422 &&
  isKeyReusedAnswer.Check(body);

/** Calls Inventory: package requests created, changed and cancelled, each safe to retry. */
export class InventoryClient {
  constructor(private readonly options: HttpClientOptions) {}

  /**
   * Makes the changes, in one call where it can (`POST /package-requests/batch`, at most
   * BATCH_MAX_ITEMS; one change goes to its single route, the smallest call). Throws when a call
   * failed as a whole; otherwise answers, per change in order, what Inventory holds or that
   * change's error.
   */
  async apply(
    changes: PackageChange[],
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<(FoundRequest | Error)[]> {
    if (changes.length === 1) {
      const answer = await this.applyOne(changes[0]!, headers, signal);
      // A whole-call failure of the only change is the call's failure (the circuit counts it).
      if (answer instanceof TransientError && answer.status !== 409) throw answer;
      return [answer];
    }
    const body: BatchRequest = { items: changes.map(batchItemOf) };
    const response = await callJson(this.options, `${PATH}/batch`, {
      method: 'POST',
      headers,
      body,
      signal,
    });
    if (response.status !== 200 || !isBatchAnswer.Check(response.body)) {
      throw failureOf(response, 'Inventory');
    }
    const { results } = response.body;
    if (results.length !== changes.length) {
      throw new TransientError(
        `Inventory answered ${results.length} results for ${changes.length} items`,
      );
    }
    const retryAfterMs = retryAfterOf(response);
    const answers: (FoundRequest | Error)[] = [];
    for (const [index, change] of changes.entries()) {
      const { status, body: answer } = results[index]!;
      answers.push(
        isReusedCreate(change, status, answer)
          ? await this.find(change, headers, signal)
          : foundOf(change, status, answer, retryAfterMs),
      );
    }
    return answers;
  }

  /** Makes one change through its single route: what Inventory holds, or the change's error. */
  async applyOne(
    change: PackageChange,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<FoundRequest | Error> {
    const path =
      change.op === 'create' || change.op === 'fence'
        ? PATH
        : change.op === 'update'
          ? `${PATH}/${change.id}`
          : `${PATH}/${change.id}/cancel`;
    const response = await callJson(this.options, path, {
      method: change.op === 'update' ? 'PATCH' : 'POST',
      headers: { 'idempotency-key': keyOf(change), ...headers },
      body: bodyOf(change),
      signal,
    });
    if (isReusedCreate(change, response.status, response.body)) {
      return this.find(change, headers, signal);
    }
    return foundOf(change, response.status, response.body, retryAfterOf(response));
  }

  /**
   * The welcome package requests of the next `limit` customers whose id sorts after `after`,
   * grouped by customer (audits); an empty answer is the end.
   */
  async welcomeRequestsByCustomer(
    after: string | undefined,
    limit: number,
  ): Promise<PackageRequest[]> {
    const query = `kind=${DEFAULT_KIND}&limit=${limit}${after === undefined ? '' : `&after=${after}`}`;
    return this.readRequests(`${PATH}/by-customer?${query}`);
  }

  /** The customer's welcome package requests (normally one), oldest first. */
  welcomeRequestsOf(customerId: string): Promise<PackageRequest[]> {
    return this.readRequests(`${PATH}?customer_id=${customerId}&limit=100`).then((requests) =>
      requests.filter((request) => request.kind === DEFAULT_KIND),
    );
  }

  private async readRequests(path: string): Promise<PackageRequest[]> {
    const response = await callJson(this.options, path, { method: 'GET' });
    if (response.status !== 200) throw failureOf(response, 'Inventory');
    if (!isPackageRequestPage.Check(response.body)) {
      throw new TransientError('Inventory listed package requests this service cannot read');
    }
    return response.body;
  }

  /** The customer's welcome package request, if Inventory has one. */
  private async find(
    change: { customerId: string },
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<FoundRequest | Error> {
    const response = await callJson(
      this.options,
      `${PATH}?customer_id=${encodeURIComponent(change.customerId)}&limit=100`,
      { method: 'GET', headers, signal },
    );
    if (response.status !== 200 || !Array.isArray(response.body)) {
      return failureOf(response, 'Inventory');
    }
    const welcome = (response.body as { kind?: unknown }[]).find(
      (request) => request.kind === DEFAULT_KIND,
    );
    if (welcome === undefined) return { request: null, created: false };
    if (!isRequestStateAnswer.Check(welcome)) {
      return new TransientError(
        `Inventory listed a package request for customer ${change.customerId} this service cannot read`,
      );
    }
    return { request: welcome, created: false };
  }
}
