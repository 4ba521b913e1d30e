/**
 * The CRM's webhook subscriptions API (`/webhook-endpoints`): the CRM serves and documents these
 * shapes; the integration service subscribes with them.
 */
import { Type, type Static } from 'typebox';
import { Timestamp, Uuid } from '../core/schemas.js';

export const NewWebhookEndpointSchema = Type.Object(
  {
    url: Type.String({
      minLength: 1,
      maxLength: 2048,
      description:
        'Where to POST events: http(s), no credentials; private addresses only if allowed.',
    }),
  },
  { additionalProperties: false },
);

const NullableTime = (description: string) => Type.Union([Timestamp(description), Type.Null()]);

export const WebhookEndpointSchema = Type.Object({
  id: Uuid('Endpoint id.'),
  url: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
  disabled_reason: Type.Union([Type.String(), Type.Null()]),
  failing_since: NullableTime('Start of the current run of failed calls, if any.'),
  created_at: Timestamp('When the endpoint was created.'),
});
export type WebhookEndpoint = Static<typeof WebhookEndpointSchema>;

export const WebhookSecretSchema = Type.Object({
  secret: Type.String({ description: '`whsec_` + base64 key for Standard Webhooks signatures.' }),
  previous_secret: Type.Union([Type.String(), Type.Null()], {
    description:
      'The secret before the last rotation, still signing until `previous_secret_expires_at`.',
  }),
  previous_secret_expires_at: NullableTime('When the previous secret stops signing.'),
});

export type WebhookSecrets = Static<typeof WebhookSecretSchema>;

/** `POST /webhook-endpoints` answers the new endpoint with its first secret. */
export const NewWebhookEndpointAnswerSchema = Type.Object({
  ...WebhookEndpointSchema.properties,
  secret: WebhookSecretSchema.properties.secret,
});
export type NewWebhookEndpointAnswer = Static<typeof NewWebhookEndpointAnswerSchema>;

export const WebhookAttemptSchema = Type.Object({
  event_id: Uuid('The event (also the `webhook-id` header).'),
  attempted_at: Timestamp('When the call was made.'),
  status: Type.Union([Type.Integer(), Type.Null()], {
    description: 'HTTP status, null if none came back.',
  }),
  error: Type.Union([Type.String(), Type.Null()]),
  duration_ms: Type.Integer(),
});

/** Where a webhook message stands: sent, still being tried, given up on, or called off. */
export const WEBHOOK_MESSAGE_STATES = ['pending', 'succeeded', 'failed', 'cancelled'] as const;
export type WebhookMessageState = (typeof WEBHOOK_MESSAGE_STATES)[number];
export const WebhookMessageStateSchema = Type.Enum(WEBHOOK_MESSAGE_STATES, {
  description:
    '`pending` (being tried), `succeeded` (a 2xx came back), `failed` (attempts used up, or 410 Gone), `cancelled` (the endpoint was disabled or deleted).',
});

/** One event's delivery to one endpoint. */
export const WebhookMessageSchema = Type.Object({
  event_id: Uuid('The event (also the `webhook-id` header).'),
  event_position: Type.Integer({ description: 'The event’s position in the feed.' }),
  state: WebhookMessageStateSchema,
  attempts: Type.Integer(),
  last_status: Type.Union([Type.Integer(), Type.Null()]),
  last_error: Type.Union([Type.String(), Type.Null()]),
  next_attempt_at: NullableTime('When a pending message is tried next.'),
  updated_at: Timestamp('When its state last changed.'),
});
export type WebhookMessage = Static<typeof WebhookMessageSchema>;
