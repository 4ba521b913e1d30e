/**
 * The integration service's operational alerts: the webhooks it sends (Standard Webhooks, signed
 * per endpoint) and the admin API that registers where they go (`/api/alert-endpoints`).
 */
import { Type, type Static } from 'typebox';
import { Timestamp, Uuid } from '../core/schemas.js';

/**
 * Each incident's opening alert type and the type that says it is over. The convention: the
 * recovery is `<opening type>.resolved`, except the circuit's, whose recovery has the name the
 * breaker gives it (`circuit.closed`). A new incident is one entry here.
 */
export const INCIDENT_ALERT_TYPES = {
  'delivery.dead_lettered': 'delivery.dead_lettered.resolved',
  'circuit.opened': 'circuit.closed',
  'backlog.high': 'backlog.high.resolved',
  'feed.stalled': 'feed.stalled.resolved',
  'audit.drift_found': 'audit.drift_found.resolved',
} as const;

/** The alert that opens an incident. */
export type IncidentType = keyof typeof INCIDENT_ALERT_TYPES;
/** The alert that closes one. */
export type ResolvedType = (typeof INCIDENT_ALERT_TYPES)[IncidentType];
export type AlertType = IncidentType | ResolvedType;

export const ALERT_TYPES = Object.entries(INCIDENT_ALERT_TYPES).flat() as AlertType[];

/**
 * Where one alert to one endpoint stands in the outbox: `pending` (due at `next_attempt_at`),
 * `sent` (answered 2xx), `failed` (given up after `ALERT_GIVE_UP_AFTER_MS`), `cancelled` (its
 * endpoint was deleted). The database CHECK (integration migration 11) comes from this list.
 */
export const ALERT_OUTBOX_STATES = ['pending', 'sent', 'failed', 'cancelled'] as const;
export type AlertOutboxState = (typeof ALERT_OUTBOX_STATES)[number];

const NullableTime = (description: string) => Type.Union([Timestamp(description), Type.Null()]);

/** The body of every alert webhook (`webhook-id` is the alert's id, the same for every endpoint). */
export const AlertWebhookSchema = Type.Object({
  type: Type.Enum(ALERT_TYPES),
  timestamp: Timestamp('When the alert was raised.'),
  data: Type.Object({
    incident_id: Uuid('The incident: its opening and its recovery alert share it.'),
    key: Type.String({
      description: 'What the incident is about, e.g. `inventory` or a feed source name.',
    }),
    summary: Type.String({ description: 'One sentence for a person.' }),
    opened_at: Timestamp('When the incident opened.'),
    resolved_at: NullableTime('When it was resolved; null in the opening alert.'),
    occurrences: Type.Integer({
      description:
        'Occurrences so far (e.g. deliveries dead-lettered): those at the opening, in the opening alert; all of them during the incident, in the recovery.',
    }),
    details: Type.Record(Type.String(), Type.Unknown(), {
      description: 'Facts about the incident, e.g. the first dead letters or the backlog.',
    }),
  }),
});
export type AlertWebhook = Static<typeof AlertWebhookSchema>;

export const NewAlertEndpointSchema = Type.Object(
  {
    url: Type.String({
      minLength: 1,
      maxLength: 2048,
      description:
        'Where to POST alerts: http(s), no credentials; private addresses only if WEBHOOK_ALLOW_PRIVATE_TARGETS or WEBHOOK_ALLOWED_PRIVATE_TARGETS admit them.',
    }),
  },
  { additionalProperties: false },
);

export const AlertEndpointSchema = Type.Object({
  id: Uuid('Endpoint id.'),
  url: Type.String(),
  origin: Type.Union([Type.Literal('api'), Type.Literal('config')], {
    description:
      '`api`: registered with POST /api/alert-endpoints; `config`: from ALERT_WEBHOOK_URLS (signed with ALERT_WEBHOOK_SECRET).',
  }),
  created_at: Timestamp('When the endpoint was registered.'),
});
export type AlertEndpoint = Static<typeof AlertEndpointSchema>;

/** `POST /api/alert-endpoints` answers the new endpoint with its signing secret, shown only then. */
export const NewAlertEndpointAnswerSchema = Type.Object({
  ...AlertEndpointSchema.properties,
  secret: Type.String({
    description:
      '`whsec_` + base64 key for the Standard Webhooks signature; shown only in this answer.',
  }),
});
export type NewAlertEndpointAnswer = Static<typeof NewAlertEndpointAnswerSchema>;
