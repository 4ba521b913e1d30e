import { Type, type Static } from 'typebox';
import { Uuid } from '../core/schemas.js';

/**
 * A delivery's life, the one list of its states: `pending` (recorded, never tried) → `delivering`
 * (claimed by one instance) → `delivered`; or → `retrying` (a transient failure, due again at
 * `next_attempt_at`) → …; or → `dead` (a permanent failure, or transient ones past the retry
 * policy) until replayed. The TypeScript union, the database CHECK (integration migration 5), the
 * admin API's schema and the metric labels all come from it: a new state is added here and in a
 * new migration that replaces the CHECK.
 */
export const DELIVERY_STATES = ['pending', 'delivering', 'retrying', 'delivered', 'dead'] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** How people read each state (the dashboard's badges, `mip`). */
export const DELIVERY_STATE_LABELS: Record<DeliveryState, string> = {
  pending: 'pending',
  delivering: 'delivering',
  retrying: 'retrying',
  delivered: 'delivered',
  dead: 'dead letter',
};

export const DeliveryStateSchema = Type.Enum(DELIVERY_STATES);

/**
 * What a delivery does to Inventory to make it match the customer's latest known state: `create`
 * its welcome package (with the latest recipient), `update` the package's recipient to a newer
 * customer version, or `cancel` the package of a deleted customer. The database CHECK
 * (integration migration 7), the admin API's schema and the metric labels come from this list.
 */
export const DELIVERY_OPERATIONS = ['create', 'update', 'cancel'] as const;
export type DeliveryOperation = (typeof DELIVERY_OPERATIONS)[number];

/**
 * How a delivered customer ended up in Inventory: its package `created`, `updated` to the latest
 * version, or `cancelled` (the customer was deleted); `left_shipped` when the package had shipped
 * before the change (its recipient stays as the shipping record); `never_created` when the
 * customer was deleted before a package was asked for.
 */
export const DELIVERY_OUTCOMES = [
  'created',
  'updated',
  'cancelled',
  'left_shipped',
  'never_created',
] as const;
export type DeliveryOutcome = (typeof DELIVERY_OUTCOMES)[number];

/** The most deliveries or dead letters one list answers. */
export const LIST_LIMIT_MAX = 1000;

const NullableText = Type.Union([Type.String(), Type.Null()]);
const NullableTime = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

/** One customer's delivery to Inventory, as the admin API shows it (a dead letter is one too). */
export const DeliverySchema = Type.Object({
  customer_id: Uuid('The CRM customer id; also the id of its dead letter.'),
  customer_name: Type.String({ description: 'Empty once the customer is deleted (erased).' }),
  customer_version: Type.Integer({
    description: 'The latest customer version this service knows: what Inventory is made to match.',
  }),
  customer_deleted: Type.Boolean({ description: 'Whether the customer was deleted in the CRM.' }),
  state: DeliveryStateSchema,
  operation: Type.Union([Type.Enum(DELIVERY_OPERATIONS), Type.Null()], {
    description:
      'What the latest attempt asked Inventory to do (`create`, `update`, `cancel`); null before the first.',
  }),
  outcome: Type.Union([Type.Enum(DELIVERY_OUTCOMES), Type.Null()], {
    description:
      'Once delivered: `created`, `updated`, `cancelled`, `left_shipped` (it had shipped before the change) or `never_created` (deleted first).',
  }),
  applied_version: Type.Union([Type.Integer(), Type.Null()], {
    description: 'The customer version Inventory’s package request is known to have.',
  }),
  source: Type.String({ description: 'Which source first reported the customer.' }),
  attempts: Type.Integer({ description: 'Calls made to Inventory since the last replay.' }),
  replays: Type.Integer(),
  last_error: NullableText,
  last_status: Type.Union([Type.Integer(), Type.Null()]),
  next_attempt_at: NullableTime,
  package_request_id: NullableText,
  customer_created_at: Type.String({ format: 'date-time' }),
  recorded_at: Type.String({ format: 'date-time' }),
  failing_since: NullableTime,
  delivered_at: NullableTime,
  updated_at: Type.String({ format: 'date-time' }),
});
export type Delivery = Static<typeof DeliverySchema>;

export const DeliveryListSchema = Type.Array(DeliverySchema);

/** The feed's read loop (the `poll` field of the status: poll and hybrid modes). */
export const PollStatusSchema = Type.Object({
  leader: Type.Boolean({ description: 'Whether this instance holds the poll lease.' }),
  lease_holder: Type.Union([Type.String(), Type.Null()], {
    description: 'The instance that holds the poll lease now, if any.',
  }),
  last_success_at: NullableTime,
  last_error: NullableText,
  last_error_at: NullableTime,
  stalled: Type.Boolean({
    description: 'True when the loop has not completed a read for three intervals.',
  }),
});
export type PollStatus = Static<typeof PollStatusSchema>;

/** The webhook subscription (the `webhook` field: webhook and hybrid modes). */
export const WebhookStatusSchema = Type.Object({
  registered: Type.Boolean(),
  endpoint_id: NullableText,
  url: NullableText,
  last_error: NullableText,
});
export type WebhookStatus = Static<typeof WebhookStatusSchema>;

/** The RabbitMQ consumer (the `amqp` field: amqp mode). */
export const AmqpStatusSchema = Type.Object({
  connected: Type.Boolean(),
  subscribed: Type.Boolean(),
  dead_lettered: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
    description:
      'Messages in RabbitMQ’s dead-letter queue (not customer events, or refused for hours); null while not subscribed.',
  }),
});
export type AmqpStatus = Static<typeof AmqpStatusSchema>;

/** One source's state: every source the mode runs has one, in the order they start. */
export const SourceStatusSchema = Type.Object({
  name: Type.String({
    description:
      'poll, reconcile, webhook or amqp: also the `source` of the deliveries it records first and the `source` label of its metrics.',
  }),
  ready: Type.Boolean({
    description:
      'False while this source keeps the service from doing its job (/ready answers 503).',
  }),
  problem: Type.Union([Type.String(), Type.Null()], {
    description: 'What is wrong with the source now, in a sentence; null when nothing is.',
  }),
  // additionalProperties rather than Type.Record's patternProperties, which OpenAPI 3.0 lacks.
  details: Type.Object(
    {},
    {
      additionalProperties: Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]),
      description: "The source's own state, e.g. the same fields as `poll`, `webhook` or `amqp`.",
    },
  ),
});
/** A source's own state, as plain fields. */
export type SourceDetails = Record<string, string | number | boolean | null>;
export type SourceStatus = Static<typeof SourceStatusSchema>;

export const CircuitStateSchema = Type.Union([
  Type.Literal('closed'),
  Type.Literal('half_open'),
  Type.Literal('open'),
]);

/** A pause of delivery to Inventory: since when, by whom. */
export const PauseSchema = Type.Object({
  since: Type.String({ format: 'date-time' }),
  by: Type.Union([Type.String(), Type.Null()], { description: 'Who paused: admin.' }),
});

/** `POST /api/delivery/pause` and `POST /api/delivery/resume`. */
export const PauseAnswerSchema = Type.Object({
  paused: Type.Union([PauseSchema, Type.Null()]),
  changed: Type.Boolean({ description: 'False when it already was so (nothing was done).' }),
  backlog: Type.Integer({ description: 'Deliveries waiting: they go out once resumed.' }),
});
export type PauseAnswer = Static<typeof PauseAnswerSchema>;

/** The body of `POST /api/resync`: where in the CRM feed to read again from. */
export const ResyncRequestSchema = Type.Object(
  {
    since_position: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: Number.MAX_SAFE_INTEGER,
        description: 'Read the feed again after this position (0: from the start).',
      }),
    ),
    since: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'Read again every event the CRM recorded at or after this time.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ResyncRequest = Static<typeof ResyncRequestSchema>;

/** A resync under way: the feed is read again from the cursor up to `until`. */
export const ResyncProgressSchema = Type.Object({
  cursor: Type.Integer({ description: 'The feed position read up to now.' }),
  until: Type.Integer({ description: 'Where the cursor stood when the resync began.' }),
});

/** `POST /api/resync`. */
export const ResyncAnswerSchema = Type.Object({
  from: Type.Integer({ description: 'The feed is read again after this position.' }),
  until: Type.Integer({ description: 'Up to here every event is read, pushed or not.' }),
});
export type ResyncAnswer = Static<typeof ResyncAnswerSchema>;

/** `GET /api/status`. */
export const StatusSchema = Type.Object({
  mode: Type.String(),
  instance_id: Type.String(),
  cursor: Type.Integer({
    description:
      'The CRM feed position up to which every event has been recorded, pushed or read from the feed.',
  }),
  deliveries: Type.Object(
    Object.fromEntries(DELIVERY_STATES.map((state) => [state, Type.Integer()])),
    { description: 'Count of deliveries in each state.' },
  ),
  circuit: CircuitStateSchema,
  paused: Type.Union([PauseSchema, Type.Null()], {
    description: 'Set while delivery to Inventory is paused (`mip pause`); null while it runs.',
  }),
  backlog: Type.Integer({
    description: 'Deliveries waiting to be made: pending, retrying or being delivered.',
  }),
  resync: Type.Union([ResyncProgressSchema, Type.Null()], {
    description: 'A resync reading the CRM feed again (`mip resync`); null when none runs.',
  }),
  poll: Type.Union([PollStatusSchema, Type.Null()], {
    description: 'The feed poll (poll and hybrid modes); null otherwise.',
  }),
  webhook: Type.Union([WebhookStatusSchema, Type.Null()], {
    description: 'The webhook subscription (webhook and hybrid modes); null otherwise.',
  }),
  amqp: Type.Union([AmqpStatusSchema, Type.Null()], {
    description: 'The RabbitMQ consumer (amqp mode); null otherwise.',
  }),
  sources: Type.Array(SourceStatusSchema, {
    description: 'Every source the mode runs (where customers come from), with its health.',
  }),
});
export type Status = Static<typeof StatusSchema>;

/** `POST /api/dead-letters/{customerId}/replay`. */
export const ReplayOneSchema = Type.Object({
  replayed: Type.Literal(true),
  delivery: DeliverySchema,
});
export type ReplayOne = Static<typeof ReplayOneSchema>;

/** The body of `POST /api/dead-letters/replay`: every field narrows the replay; none means all. */
export const ReplayFilterSchema = Type.Object(
  {
    since: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'Only dead letters that became dead at or after this time.',
      }),
    ),
    error_contains: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description: 'Only those whose last error contains this text, in any letter case.',
      }),
    ),
    status: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 599,
        description: 'Only those whose last attempt got this HTTP status.',
      }),
    ),
    dry_run: Type.Optional(
      Type.Boolean({ description: 'Count what would be replayed, and replay nothing.' }),
    ),
  },
  { additionalProperties: false },
);
export type ReplayFilter = Static<typeof ReplayFilterSchema>;

/** `POST /api/dead-letters/replay`. */
export const ReplayAllSchema = Type.Object({
  matched: Type.Integer({ description: 'How many dead letters the filter took when counted.' }),
  replayed: Type.Integer({ description: 'How many were replayed (0 on a dry run).' }),
  dry_run: Type.Boolean(),
});
export type ReplayAll = Static<typeof ReplayAllSchema>;
