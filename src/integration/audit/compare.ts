/**
 * The audit's comparison: the CRM's customers and Inventory's welcome package requests, both read
 * in byte order of the customer id, walked side by side a page at a time (memory bounded by the
 * page size, whatever the number of customers), and what each customer's pair says.
 */
import type { DriftKind } from '../../contracts/audit.js';
import { compareIds, type CustomerState } from '../../contracts/customer-states.js';
import type { PackageRequest } from '../../contracts/package-requests.js';

/** One customer id as both sides know it. */
export interface CustomerPair {
  customerId: string;
  /** What the CRM knows; undefined when it never had the customer. */
  state: CustomerState | undefined;
  /** Inventory's welcome package requests of the customer, oldest first. */
  requests: PackageRequest[];
}

export interface Drift {
  kind: DriftKind;
  pair: CustomerPair;
  detail: string;
}

/** Reads a page after an id (from the start when undefined); an empty page is the end. */
export type ReadPage<T> = (after: string | undefined) => Promise<T[]>;

/**
 * The items of every page in turn; the next page is already being read while the caller works
 * through the current one.
 */
export async function* itemsOf<T>(read: ReadPage<T>, idOf: (item: T) => string): AsyncGenerator<T> {
  let next = read(undefined);
  for (;;) {
    const page = await next;
    if (page.length === 0) return;
    next = read(idOf(page.at(-1)!));
    // A rejected read ahead is awaited on the next turn; until then it must not count as unhandled.
    next.catch(() => {});
    yield* page;
  }
}

/** Requests of one customer together (they arrive adjacent, customer by customer). */
async function* groupedByCustomer(
  requests: AsyncIterable<PackageRequest>,
): AsyncGenerator<PackageRequest[]> {
  let group: PackageRequest[] = [];
  for await (const request of requests) {
    if (group.length > 0 && group[0]!.customer_id !== request.customer_id) {
      yield group;
      group = [];
    }
    group.push(request);
  }
  if (group.length > 0) yield group;
}

/** Both sides merged by customer id: each id either side knows, once, in order. */
export async function* pairsOf(
  states: AsyncIterable<CustomerState>,
  requests: AsyncIterable<PackageRequest>,
): AsyncGenerator<CustomerPair> {
  const left = states[Symbol.asyncIterator]();
  const right = groupedByCustomer(requests)[Symbol.asyncIterator]();
  let state = await left.next();
  let group = await right.next();
  while (!state.done || !group.done) {
    const order = state.done
      ? 1
      : group.done
        ? -1
        : compareIds(state.value.id, group.value[0]!.customer_id);
    if (order < 0) {
      yield { customerId: state.value!.id, state: state.value!, requests: [] };
      state = await left.next();
    } else if (order > 0) {
      const requestsOfOne = group.value as PackageRequest[];
      yield {
        customerId: requestsOfOne[0]!.customer_id,
        state: undefined,
        requests: requestsOfOne,
      };
      group = await right.next();
    } else {
      yield { customerId: state.value!.id, state: state.value!, requests: group.value! };
      state = await left.next();
      group = await right.next();
    }
  }
}

const ids = (requests: PackageRequest[]) => requests.map((request) => request.id).join(', ');

/**
 * What disagrees for one customer, the first that applies of: a package of a customer the CRM
 * never had, a pending package of a deleted one, none or several for a live one, and a pending
 * package for an older version of the customer. Cancelled requests count for none of them (they send nothing).
 */
export function driftOf(pair: CustomerPair): Drift | undefined {
  const { state, requests } = pair;
  const open = requests.filter((request) => request.status !== 'cancelled');
  if (state === undefined) {
    if (open.length === 0) return undefined;
    return {
      kind: 'unknown_customer',
      pair,
      detail: `the CRM never had this customer; Inventory has ${open.length} open request(s): ${ids(open)}`,
    };
  }
  if (state.deleted_at !== null) {
    const pending = open.filter((request) => request.status === 'pending');
    if (pending.length === 0) return undefined;
    return {
      kind: 'pending_after_deletion',
      pair,
      detail: `deleted in the CRM at ${state.deleted_at}; request ${ids(pending)} is still pending`,
    };
  }
  if (open.length === 0) {
    return {
      kind: 'missing_package',
      pair,
      detail:
        requests.length === 0
          ? 'Inventory has no welcome package request'
          : `Inventory's only request(s) ${ids(requests)} are cancelled`,
    };
  }
  if (open.length > 1) {
    return {
      kind: 'duplicate_packages',
      pair,
      detail: `${open.length} open requests: ${ids(open)}`,
    };
  }
  const request = open[0]!;
  if (request.status !== 'pending') return undefined;
  // By version: an edit made in Inventory under the customer's current version is Inventory's to
  // keep (a change of the same version is answered unchanged), so it is not drift.
  const version = request.customer_version ?? 1;
  if (version < state.version) {
    return {
      kind: 'stale_recipient',
      pair,
      detail: `request ${request.id} is for version ${version} (${request.recipient_name ?? 'no name'}, ${request.recipient_email ?? 'no email'}); the CRM has version ${state.version}`,
    };
  }
  return undefined;
}
