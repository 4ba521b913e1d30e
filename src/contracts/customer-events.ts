/**
 * The CRM's customer events: what it emits (its feed, webhooks and AMQP messages) and what each
 * consumer reads of them. The CRM serves and documents the full events; each reader checks only
 * the fields it relies on, so a field added to an event breaks no consumer.
 */
import { Type, type Static } from 'typebox';
import { Timestamp, Uuid } from '../core/schemas.js';
import { compileParser } from './checker.js';
import { CHANGEABLE_CUSTOMER_FIELDS, CustomerSchema } from './customers.js';

export const CUSTOMER_CREATED = 'customer.created';
export const CUSTOMER_UPDATED = 'customer.updated';
export const CUSTOMER_DELETED = 'customer.deleted';
/** Every event type, in the order they were introduced; also their RabbitMQ routing keys. */
export const CUSTOMER_EVENT_TYPES = [CUSTOMER_CREATED, CUSTOMER_UPDATED, CUSTOMER_DELETED] as const;
export type CustomerEventType = (typeof CUSTOMER_EVENT_TYPES)[number];

const Position = Type.Integer({
  minimum: 1,
  description: 'Place in the feed; strictly increasing in commit order. Resume after it.',
});

const ChangedFields = Type.Array(Type.Enum(CHANGEABLE_CUSTOMER_FIELDS), {
  minItems: 1,
  uniqueItems: true,
  description: 'The fields this change gave new values.',
});

/** What every event carries besides its type and data. */
const envelope = {
  position: Position,
  id: Uuid('Unique event id; a consumer deduplicates on it.'),
  occurred_at: Timestamp('When the event was recorded.'),
  traceparent: Type.Union([Type.String(), Type.Null()], {
    description: 'W3C trace context of the request that caused the event, to continue its trace.',
  }),
};

/** A new customer, as the CRM records and serves it (`GET /events`, AMQP message bodies). */
export const CustomerCreatedEventSchema = Type.Object(
  { ...envelope, type: Type.Literal(CUSTOMER_CREATED), data: CustomerSchema },
  { additionalProperties: false },
);
export type CustomerCreatedEvent = Static<typeof CustomerCreatedEventSchema>;

/** A changed customer: its whole new state (`data.version` one more) and which fields changed. */
export const CustomerUpdatedEventSchema = Type.Object(
  {
    ...envelope,
    type: Type.Literal(CUSTOMER_UPDATED),
    data: CustomerSchema,
    changed_fields: ChangedFields,
  },
  { additionalProperties: false },
);
export type CustomerUpdatedEvent = Static<typeof CustomerUpdatedEventSchema>;

/** What is left of a deleted customer: no personal data. */
export const DeletedCustomerSchema = Type.Object(
  {
    id: Uuid('The deleted customer’s id.'),
    version: Type.Integer({ minimum: 2, description: 'One more than its last version.' }),
    deleted_at: Timestamp('When the customer was deleted.'),
  },
  { additionalProperties: false },
);
export type DeletedCustomer = Static<typeof DeletedCustomerSchema>;

/**
 * A deleted customer. The feed then no longer holds the customer's earlier events (they carried
 * its name and email): a reader that had not seen them sees only this one.
 */
export const CustomerDeletedEventSchema = Type.Object(
  { ...envelope, type: Type.Literal(CUSTOMER_DELETED), data: DeletedCustomerSchema },
  { additionalProperties: false },
);
export type CustomerDeletedEvent = Static<typeof CustomerDeletedEventSchema>;

/** Any customer event; per customer, the feed holds them in `data.version` order. */
export const CustomerEventSchema = Type.Union([
  CustomerCreatedEventSchema,
  CustomerUpdatedEventSchema,
  CustomerDeletedEventSchema,
]);
export type CustomerEvent = Static<typeof CustomerEventSchema>;

/**
 * The body of a webhook call (Standard Webhooks): the event's type, time, feed position and data
 * (and the changed fields of an update); its id travels in the `webhook-id` header. The position
 * says where in the feed a receiver that missed calls can read them again (`GET /events?after=`).
 */
export const CustomerCreatedWebhookSchema = Type.Object({
  type: Type.Literal(CUSTOMER_CREATED),
  timestamp: Timestamp('When the event was recorded.'),
  position: Position,
  data: CustomerSchema,
});
export const CustomerUpdatedWebhookSchema = Type.Object({
  type: Type.Literal(CUSTOMER_UPDATED),
  timestamp: Timestamp('When the event was recorded.'),
  position: Position,
  data: CustomerSchema,
  changed_fields: ChangedFields,
});
export const CustomerDeletedWebhookSchema = Type.Object({
  type: Type.Literal(CUSTOMER_DELETED),
  timestamp: Timestamp('When the event was recorded.'),
  position: Position,
  data: DeletedCustomerSchema,
});
export const CustomerEventWebhookSchema = Type.Union([
  CustomerCreatedWebhookSchema,
  CustomerUpdatedWebhookSchema,
  CustomerDeletedWebhookSchema,
]);
export type CustomerEventWebhook = Static<typeof CustomerEventWebhookSchema>;

// ---------------------------------------------------------------------------------------------
// What consumers read. Lenient by design: only the fields a consumer relies on are checked.

/** A time `Date.parse` reads: consumers turn `created_at` into ms for end-to-end lag figures. */
const ParsableTime = Type.Refine(
  Type.String(),
  (value) => !Number.isNaN(Date.parse(value)),
  () => 'must be a date and time, e.g. 2026-01-31T09:30:00Z',
);

/**
 * What a delivery needs of a live customer: the `data` of a customer.created or customer.updated
 * event. `version` and `updated_at` are absent from events recorded before customers changed
 * (read as version 1, changed when created).
 */
const DeliverableCustomerSchema = Type.Object({
  id: Uuid('The customer id.'),
  name: Type.String(),
  email: Type.Optional(Type.String()),
  version: Type.Optional(Type.Integer({ minimum: 1 })),
  created_at: ParsableTime,
  updated_at: Type.Optional(ParsableTime),
});
export type DeliverableCustomer = Static<typeof DeliverableCustomerSchema>;
export const parseDeliverableCustomer = compileParser(DeliverableCustomerSchema);

/** What a delivery needs of a deleted customer: the `data` of a customer.deleted event. */
const DeliverableDeletionSchema = Type.Object({
  id: Uuid('The customer id.'),
  version: Type.Integer({ minimum: 1 }),
  deleted_at: ParsableTime,
});
export type DeliverableDeletion = Static<typeof DeliverableDeletionSchema>;
export const parseDeliverableDeletion = compileParser(DeliverableDeletionSchema);

/**
 * A customer event pushed to the integration service (webhook body or AMQP message body): its
 * type, place in the feed and customer id. Any `type` is read: the receiver records the types it
 * handles (their `data` read with its own parser) and passes the others by.
 */
export const PushedCustomerEventSchema = Type.Object({
  type: Type.String(),
  /** Absent from older CRMs' messages: the receiver then leaves the gap to the feed repair. */
  position: Type.Optional(Position),
  data: Type.Object({ id: Uuid('The customer id.') }),
});
export type PushedCustomerEvent = Static<typeof PushedCustomerEventSchema>;
export const parsePushedCustomerEvent = compileParser(PushedCustomerEventSchema);

/** One event of a CRM feed page, as the integration service's feed client reads it. */
export const FeedEventSchema = Type.Object({
  position: Position,
  id: Type.String(),
  type: Type.String(),
  occurred_at: Type.String(),
  data: Type.Object({ id: Uuid('The customer id.') }),
  traceparent: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});
export type FeedEvent = Static<typeof FeedEventSchema>;
/** A page of `GET /events`: the events after the cursor, in feed order. */
export const parseFeedPage = compileParser(Type.Array(FeedEventSchema));

/**
 * What a queue consumer (the Lambda) needs of a customer.created event: the customer's id, and
 * the event's id for its logs when it has one.
 */
export const CustomerCreatedIdsSchema = Type.Object({
  type: Type.Literal(CUSTOMER_CREATED),
  id: Type.Optional(Type.Unknown()),
  data: Type.Object({ id: Uuid('The customer id.') }),
});
export const parseCustomerCreatedIds = compileParser(CustomerCreatedIdsSchema);
