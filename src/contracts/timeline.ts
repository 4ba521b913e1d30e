import { Type, type Static } from 'typebox';
import { DELIVERY_OPERATIONS, DELIVERY_OUTCOMES, DeliverySchema } from './admin-api.js';
import { Uuid } from '../core/schemas.js';

/**
 * What a customer's timeline records, one entry each: an `event` a source reported about the
 * customer, an `attempt` (one call to Inventory on its behalf, or the step that needed none), or an
 * operator's `action`. The database CHECK (integration migration 8) and the admin API's schema
 * come from these lists.
 */
export const TIMELINE_KINDS = ['event', 'attempt', 'action'] as const;
export type TimelineKind = (typeof TIMELINE_KINDS)[number];

/**
 * What became of an entry. An event's state was `taken` (newer than any known before), `stale`
 * (an equal or newer version was known already: duplicated, reordered or superseded in the same
 * read) or a `duplicate` (a redelivered message id). An attempt was `delivered` (Inventory matches),
 * `advanced` (one more step needed), `retrying`, `dead`, `superseded` (a newer state arrived during
 * the call: what it found was kept) or `late` (its claim had expired: another instance owned the
 * delivery, nothing was written). An action was `done`.
 */
export const TIMELINE_RESULTS = [
  'taken',
  'stale',
  'duplicate',
  'delivered',
  'advanced',
  'retrying',
  'dead',
  'superseded',
  'late',
  'done',
] as const;
export type TimelineResult = (typeof TIMELINE_RESULTS)[number];

/**
 * Operator actions a timeline records: a `replay` of the customer's dead letter, and a `pause` or
 * `resume` of all delivery to Inventory or a `resync` from the CRM feed (in every customer's timeline, from the one in force when
 * the customer arrived on).
 */
export const TIMELINE_ACTIONS = ['replay', 'pause', 'resume', 'resync'] as const;
export type TimelineAction = (typeof TIMELINE_ACTIONS)[number];

/** The most entries one read of a timeline answers. */
export const TIMELINE_LIMIT_MAX = 1000;

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) =>
  Type.Union([schema, Type.Null()]);

/** One entry; the fields that do not apply to its kind are null. */
export const TimelineEntrySchema = Type.Object({
  seq: Type.Integer({ description: 'Increases with every entry: the order things were recorded.' }),
  at: Type.String({ format: 'date-time' }),
  kind: Type.Enum(TIMELINE_KINDS),
  result: Type.Enum(TIMELINE_RESULTS),
  source: Nullable(
    Type.String({ description: 'Event: poll, reconcile, webhook or amqp; action: who (admin).' }),
  ),
  event_type: Nullable(Type.String({ description: 'Event: e.g. `customer.updated`.' })),
  event_id: Nullable(Type.String({ description: 'Event: the CRM event id.' })),
  message_id: Nullable(
    Type.String({ description: 'Event: the pushed message id (webhook or RabbitMQ).' }),
  ),
  version: Nullable(
    Type.Integer({ description: 'The customer version the event carried or the attempt was for.' }),
  ),
  operation: Nullable(Type.Enum(DELIVERY_OPERATIONS)),
  outcome: Nullable(Type.Enum(DELIVERY_OUTCOMES)),
  duration_ms: Nullable(Type.Integer({ description: 'Attempt: from its start to its answer.' })),
  status: Nullable(Type.Integer({ description: 'Attempt: the HTTP status of a failed call.' })),
  error: Nullable(Type.String()),
  trace_id: Nullable(Type.String({ description: 'Attempt: the W3C trace id of its call.' })),
  instance: Nullable(Type.String({ description: 'Attempt or action: the instance that made it.' })),
  action: Nullable(Type.Enum(TIMELINE_ACTIONS)),
  all_customers: Type.Boolean({
    description: 'An action on every customer (a pause or resume), not on this one alone.',
  }),
});
export type TimelineEntry = Static<typeof TimelineEntrySchema>;

/** `GET /api/customers/{id}/timeline`. */
export const TimelineSchema = Type.Object({
  customer_id: Uuid('The CRM customer id.'),
  delivery: Type.Union([DeliverySchema, Type.Null()], {
    description: 'Where the customer stands now; null when no source has reported it.',
  }),
  entries: Type.Array(TimelineEntrySchema, { description: 'Oldest first.' }),
  next_after: Nullable(
    Type.Integer({
      description: 'Pass as `after` to read the entries that follow; null when this is the last.',
    }),
  ),
});
export type Timeline = Static<typeof TimelineSchema>;

/** `GET /api/customers/lookup?email=`. */
export const CustomerLookupSchema = Type.Object({ customer_id: Uuid('The CRM customer id.') });
export type CustomerLookup = Static<typeof CustomerLookupSchema>;
