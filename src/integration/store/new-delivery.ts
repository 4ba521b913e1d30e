import type { Parsed } from '../../contracts/checker.js';
import {
  CUSTOMER_CREATED,
  CUSTOMER_DELETED,
  CUSTOMER_UPDATED,
  parseDeliverableCustomer,
  parseDeliverableDeletion,
  type CustomerEventType,
} from '../../contracts/customer-events.js';

/**
 * A customer's state some source reported (a created, updated or deleted event), about to become
 * its delivery's desired state: Inventory is made to match the newest version reported.
 */
export interface NewDelivery {
  customerId: string;
  /** The customer's name; empty for a deleted customer (nothing personal is kept). */
  customerName: string;
  /** The customer's email; null for a deleted customer, or from an event that lacked it. */
  customerEmail: string | null;
  /** The customer version this state is: a newer one replaces it, an older one is ignored. */
  customerVersion: number;
  /** When the customer was deleted, ms since the epoch; null while it lives. */
  deletedAt: number | null;
  /** When the CRM created the customer, ms since the epoch (for end-to-end lag). */
  customerCreatedAt: number;
  /** When the CRM recorded this state, ms since the epoch (for the lag of changes). */
  changedAt: number;
  /** The event that reported it. */
  eventType: CustomerEventType;
  eventId: string;
  /** `poll`, `reconcile`, `webhook` or `amqp`. */
  source: string;
  /** W3C trace context of the CRM request that caused the event, when known. */
  traceparent?: string | undefined;
}

/** A customer event as every source has it: its type, the id to record it under, its data. */
export interface ReportedEvent {
  type: string;
  id: string;
  data: unknown;
  traceparent?: unknown;
}

const traceparentOf = (value: unknown) =>
  typeof value === 'string' && value.length <= 128 ? value : undefined;

/**
 * The desired state a customer event brings, read from its data; undefined for an event type
 * this service does not handle (its position still counts as seen).
 */
export function deliveryOfEvent(
  event: ReportedEvent,
  source: string,
): Parsed<NewDelivery> | undefined {
  // Each state is written out whole: on Node 20, each field added after a spread (`{ ...a, b }`)
  // took about 1 µs (11 µs per event here), against a few ns in a literal.
  const traceparent = traceparentOf(event.traceparent);
  if (event.type === CUSTOMER_CREATED || event.type === CUSTOMER_UPDATED) {
    const parsed = parseDeliverableCustomer(event.data);
    if (!parsed.ok) return parsed;
    const customer = parsed.value;
    const createdAt = Date.parse(customer.created_at);
    return {
      ok: true,
      value: {
        eventId: event.id,
        source,
        traceparent,
        eventType: event.type,
        customerId: customer.id,
        customerName: customer.name,
        customerEmail: customer.email ?? null,
        customerVersion: customer.version ?? 1,
        deletedAt: null,
        customerCreatedAt: createdAt,
        changedAt: customer.updated_at === undefined ? createdAt : Date.parse(customer.updated_at),
      },
    };
  }
  if (event.type === CUSTOMER_DELETED) {
    const parsed = parseDeliverableDeletion(event.data);
    if (!parsed.ok) return parsed;
    const deletedAt = Date.parse(parsed.value.deleted_at);
    return {
      ok: true,
      value: {
        eventId: event.id,
        source,
        traceparent,
        eventType: CUSTOMER_DELETED,
        customerId: parsed.value.id,
        customerName: '',
        customerEmail: null,
        customerVersion: parsed.value.version,
        deletedAt,
        // Only its deletion was seen: the deletion stands in for the creation.
        customerCreatedAt: deletedAt,
        changedAt: deletedAt,
      },
    };
  }
  return undefined;
}

/**
 * Of several states reported for the same customers (a page of the feed), the newest of each, in
 * the order their customers first appear: one upsert must not touch a row twice.
 */
export function newestPerCustomer(items: readonly NewDelivery[]): NewDelivery[] {
  const newest = new Map<string, NewDelivery>();
  for (const item of items) {
    const known = newest.get(item.customerId);
    if (!known || item.customerVersion > known.customerVersion) {
      // Replacing keeps the customer's place: a Map keeps the order of first insertion.
      newest.set(item.customerId, item);
    }
  }
  return [...newest.values()];
}
