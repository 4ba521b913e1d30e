import type { FastifyPluginAsync } from 'fastify';
import type { TSchema } from 'typebox';
import { CRM_EVENTS_EXCHANGE } from '../core/amqp.js';
import {
  CustomerCreatedEventSchema,
  CustomerCreatedWebhookSchema,
  CustomerDeletedEventSchema,
  CustomerDeletedWebhookSchema,
  CustomerUpdatedEventSchema,
  CustomerUpdatedWebhookSchema,
  CUSTOMER_CREATED,
  CUSTOMER_DELETED,
  CUSTOMER_UPDATED,
} from '../contracts/customer-events.js';

/** The JSON Schema of a contract schema, as plain data (TypeBox's own markers left out). */
const schemaOf = (schema: unknown): Record<string, unknown> =>
  JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;

const EVENTS = [
  {
    key: 'customerCreated',
    type: CUSTOMER_CREATED,
    summary: 'A customer was created.',
    event: CustomerCreatedEventSchema,
    webhook: CustomerCreatedWebhookSchema,
  },
  {
    key: 'customerUpdated',
    type: CUSTOMER_UPDATED,
    summary: 'A customer changed: its whole new state and the changed fields.',
    event: CustomerUpdatedEventSchema,
    webhook: CustomerUpdatedWebhookSchema,
  },
  {
    key: 'customerDeleted',
    type: CUSTOMER_DELETED,
    summary: 'A customer was deleted; nothing personal is left in the event.',
    event: CustomerDeletedEventSchema,
    webhook: CustomerDeletedWebhookSchema,
  },
] as const;

const WEBHOOK_HEADERS = {
  type: 'object',
  required: ['webhook-id', 'webhook-timestamp', 'webhook-signature'],
  properties: {
    'webhook-id': {
      type: 'string',
      description: 'The event id, the same on every retry: deduplicate on it.',
    },
    'webhook-timestamp': { type: 'string', description: 'Unix seconds when this call was signed.' },
    'webhook-signature': {
      type: 'string',
      description:
        'Space-separated `v1,<base64 HMAC-SHA256>` signatures (Standard Webhooks), one per valid secret.',
    },
  },
};

/**
 * The AsyncAPI 3.0 document of the CRM's events: the RabbitMQ exchange (routing key = event type)
 * and the webhooks, their payloads taken from the contract module.
 */
export function buildAsyncApiDocument(version: string): Record<string, unknown> {
  const messages: Record<string, unknown> = {};
  for (const { key, type, summary, event, webhook } of EVENTS) {
    messages[key] = {
      name: type,
      title: type,
      summary,
      contentType: 'application/json',
      payload: schemaOf(event),
      bindings: { amqp: { messageType: type, bindingVersion: '0.3.0' } },
    };
    messages[`${key}Webhook`] = {
      name: type,
      title: `${type} (webhook)`,
      summary: `${summary} POSTed to every active endpoint, signed per Standard Webhooks.`,
      contentType: 'application/json',
      headers: WEBHOOK_HEADERS,
      payload: schemaOf(webhook),
    };
  }
  // Each channel lists the messages it carries; each operation points at its channel's.
  const channelMessages = (suffix: string) =>
    Object.fromEntries(
      EVENTS.map(({ key }) => [
        `${key}${suffix}`,
        { $ref: `#/components/messages/${key}${suffix}` },
      ]),
    );
  const operationMessages = (channel: string, suffix: string) =>
    EVENTS.map(({ key }) => ({ $ref: `#/channels/${channel}/messages/${key}${suffix}` }));
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'CRM customer events',
      version,
      description:
        'What the CRM announces about its customers, from one transactional outbox: the change feed (`GET /events`, see /openapi.json), webhooks and RabbitMQ. Per customer, events come in `data.version` order; each has a unique id to deduplicate on.',
    },
    servers: {
      rabbitmq: {
        host: 'localhost:5672',
        protocol: 'amqp',
        protocolVersion: '0.9.1',
        description: 'The broker `AMQP_URL` names; `AMQP_NAME_PREFIX` prefixes the exchange.',
      },
    },
    channels: {
      crmEvents: {
        address: CRM_EVENTS_EXCHANGE,
        title: 'The CRM’s event exchange',
        description:
          'A durable topic exchange; each event is published persistent, with publisher confirms, under its type as routing key and its id as `message-id`. Bind a queue to the types you take, e.g. `customer.*`.',
        servers: [{ $ref: '#/servers/rabbitmq' }],
        messages: channelMessages(''),
        bindings: {
          amqp: {
            is: 'routingKey',
            exchange: {
              name: CRM_EVENTS_EXCHANGE,
              type: 'topic',
              durable: true,
              autoDelete: false,
            },
            bindingVersion: '0.3.0',
          },
        },
      },
      webhooks: {
        address: null,
        title: 'Webhook endpoints',
        description:
          'The URL of each endpoint registered with `POST /webhook-endpoints`. Only a 2xx within `WEBHOOK_TIMEOUT_MS` counts; failures are retried with backoff.',
        messages: channelMessages('Webhook'),
      },
    },
    operations: {
      publishCustomerEvents: {
        action: 'send',
        title: 'Publish customer events to RabbitMQ',
        channel: { $ref: '#/channels/crmEvents' },
        messages: operationMessages('crmEvents', ''),
      },
      sendWebhooks: {
        action: 'send',
        title: 'POST customer events to webhook endpoints',
        channel: { $ref: '#/channels/webhooks' },
        messages: operationMessages('webhooks', 'Webhook'),
        bindings: { http: { method: 'POST', bindingVersion: '0.3.0' } },
      },
    },
    components: { messages },
  };
}

/** `GET /asyncapi.json`: the AsyncAPI 3.0 document of the CRM's events. */
export const asyncApiRoute: FastifyPluginAsync<{ version: string }> = async (app, options) => {
  const document = buildAsyncApiDocument(options.version);
  app.get(
    '/asyncapi.json',
    {
      schema: {
        tags: ['change feed'],
        summary: 'The AsyncAPI 3.0 document of the customer events (RabbitMQ and webhooks)',
        response: {
          200: {
            description: 'An AsyncAPI 3.0 document.',
            type: 'object',
            additionalProperties: true,
          } as TSchema,
        },
      },
    },
    async () => document,
  );
};
