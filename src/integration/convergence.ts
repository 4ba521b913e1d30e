/**
 * What to ask Inventory for one customer, and what its answer means: the level-triggered core of
 * the sync. A delivery holds the customer's latest known state (its version, live or deleted) and
 * what Inventory is known to hold; each attempt makes one call that brings Inventory closer, and
 * the answer (which always shows the package request as it now stands) says whether it matches.
 * Shared by the service's delivery worker and the Lambda handler.
 */
import type { DeliveryOperation, DeliveryOutcome } from '../contracts/admin-api.js';
import { NonRetryableError, TransientError } from '../core/retryable-errors.js';
import type { FoundRequest, PackageChange } from './inventory-client.js';
import type { DeliveryRow } from './migrations.js';

/** A customer's latest known state, and what Inventory is known to hold for it. */
export interface CustomerTarget {
  customerId: string;
  /** The latest customer version known: what Inventory is made to match. */
  version: number;
  deleted: boolean;
  name: string;
  email: string | null;
  /** Its welcome package request in Inventory, once an answer named it. */
  packageRequestId: string | null;
  /** Whether a create may have reached Inventory with no answer recorded. */
  createTried: boolean;
  /** How many times an audit or resync sent the customer through again. Default 0. */
  repairs?: number;
}

export function targetOfRow(row: DeliveryRow): CustomerTarget {
  return {
    customerId: row.customer_id,
    version: Number(row.customer_version),
    deleted: row.customer_deleted_at !== null,
    name: row.customer_name,
    email: row.customer_email,
    packageRequestId: row.package_request_id,
    createTried: row.create_tried === 1,
    repairs: Number(row.repairs),
  };
}

/** The call an attempt makes, and the operation it counts as; no call for a customer deleted first. */
export type Plan =
  { operation: DeliveryOperation; change: PackageChange } | { operation: null; change: null };

export function planFor(target: CustomerTarget): Plan {
  const { customerId, packageRequestId: id } = target;
  // A repaired customer's calls are new changes to Inventory (inventory-client.ts, keyOf).
  const repair = target.repairs ? { repair: target.repairs } : {};
  if (target.deleted) {
    if (id !== null)
      return { operation: 'cancel', change: { op: 'cancel', id, customerId, ...repair } };
    // A create may have committed with no answer recorded, or still be on its way: a search
    // could miss it, a fence under its key cannot (inventory-client.ts).
    if (target.createTried) {
      return {
        operation: 'cancel',
        change: { op: 'fence', customerId, version: target.version, ...repair },
      };
    }
    return { operation: null, change: null };
  }
  const recipient = {
    customerId,
    version: target.version,
    name: target.name,
    email: target.email,
  };
  if (id === null)
    return { operation: 'create', change: { op: 'create', ...recipient, ...repair } };
  return { operation: 'update', change: { op: 'update', id, ...recipient, ...repair } };
}

/** What the call found out about Inventory, to record whatever comes of the attempt. */
export interface Facts {
  packageRequestId?: string | undefined;
  appliedVersion?: number | null | undefined;
}

/** What an answer means for the customer. */
export type Decision =
  | ({ state: 'delivered'; outcome: DeliveryOutcome } & Facts)
  /** Inventory does not match yet, but the next call will bring it closer (no failure). */
  | ({ state: 'advanced' } & Facts)
  /** Inventory cannot be made to match without a person: a dead letter. */
  | { state: 'refused'; error: NonRetryableError };

/** The customer version a request has; requests from before versions came from version 1. */
const versionOf = (found: NonNullable<FoundRequest['request']>) => found.customer_version ?? 1;

/** Whether Inventory now matches `target`, given the request it showed after `plan`'s call. */
export function decide(target: CustomerTarget, plan: Plan, found: FoundRequest): Decision {
  const request = found.request;
  if (request === null) {
    // Only a search answers "none" (after a fence refused for its key, which a create used).
    return target.deleted
      ? { state: 'delivered', outcome: 'never_created' }
      : { state: 'advanced', packageRequestId: undefined };
  }
  const facts: Facts = {
    packageRequestId: request.id,
    appliedVersion: request.customer_version ?? null,
  };
  const current = !target.deleted && versionOf(request) >= target.version;
  const doneAs: DeliveryOutcome = plan.operation === 'create' ? 'created' : 'updated';
  switch (request.status) {
    case 'shipped':
      // Shipped before the change: its recipient stays as the shipping record.
      return { state: 'delivered', outcome: current ? doneAs : 'left_shipped', ...facts };
    case 'cancelled':
      // Cancelled at this version or later: the state asked for is older than the cancellation.
      if (target.deleted || versionOf(request) >= target.version) {
        return { state: 'delivered', outcome: 'cancelled', ...facts };
      }
      return {
        state: 'refused',
        error: new NonRetryableError(
          `Inventory's package request ${request.id} for customer ${target.customerId} is cancelled, but the customer still exists in the CRM; a cancelled request changes no more and a customer gets one per kind. Settle it with the warehouse; replaying this dead letter asks Inventory again.`,
          409,
        ),
      };
    case 'pending':
      if (current) return { state: 'delivered', outcome: doneAs, ...facts };
      // Deleted: cancel it next. Live and older: update it next.
      return { state: 'advanced', ...facts };
  }
}

/** The outcome of bringing one customer's package to its state without stored state. */
export interface Converged {
  outcome: DeliveryOutcome;
  packageRequestId: string | undefined;
  /** Whether a call created the package request. */
  created: boolean;
}

/**
 * Brings Inventory to `target` with no delivery stored (the Lambda): each call's answer shows what
 * Inventory holds, so a few calls in a row (create, then update an older package; find, then
 * cancel) reach it. Throws the failure of a call, or when `maxSteps` calls did not reach it.
 */
export async function convergeStatelessly(
  apply: (change: PackageChange) => Promise<FoundRequest | Error>,
  target: CustomerTarget,
  maxSteps = 4,
): Promise<Converged> {
  let known = target;
  let created = false;
  for (let step = 0; step < maxSteps; step++) {
    const plan = planFor(known);
    if (!plan.change) return { outcome: 'never_created', packageRequestId: undefined, created };
    const found = await apply(plan.change);
    if (found instanceof Error) throw found;
    created ||= found.created;
    const decision = decide(known, plan, found);
    if (decision.state === 'refused') throw decision.error;
    if (decision.state === 'delivered') {
      return { outcome: decision.outcome, packageRequestId: decision.packageRequestId, created };
    }
    known = { ...known, packageRequestId: decision.packageRequestId ?? known.packageRequestId };
  }
  throw new TransientError(
    `Inventory did not match customer ${target.customerId} version ${target.version} after ${maxSteps} calls`,
  );
}
