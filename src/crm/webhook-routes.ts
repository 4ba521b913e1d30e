import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { redactUrl } from '../core/config.js';
import { problemResponses } from '../core/http.js';
import { Uuid } from '../core/schemas.js';
import {
  NewWebhookEndpointAnswerSchema,
  NewWebhookEndpointSchema,
  WebhookAttemptSchema,
  WebhookEndpointSchema,
  WebhookSecretSchema,
} from '../contracts/webhook-endpoints.js';
import type { WebhookEndpoints } from './webhook-endpoints.js';
import { admitWebhookTarget, type WebhookTargetPolicy } from '../core/webhooks/targets.js';

export interface WebhookRoutesOptions {
  endpoints: WebhookEndpoints;
  /** Where endpoints may point besides the public internet. */
  targets: WebhookTargetPolicy;
}

const IdParams = Type.Object({ id: Uuid('The endpoint id.') });

/** Webhook subscriptions: create, list, inspect, rotate secrets, re-enable, delete, see attempts. */
export const webhookRoutes: FastifyPluginAsync<WebhookRoutesOptions> = async (app, options) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { endpoints } = options;
  const tags = ['webhook endpoints'];

  api.post(
    '/webhook-endpoints',
    {
      schema: {
        tags,
        summary: 'Subscribe a URL to every customer.created event (Standard Webhooks)',
        description:
          'Each event is POSTed with `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>` made with the returned secret; only a 2xx answer within the timeout counts. Failed calls are retried with exponential backoff and jitter.',
        body: NewWebhookEndpointSchema,
        response: {
          201: NewWebhookEndpointAnswerSchema,
          ...problemResponses(409, 422),
        },
      },
    },
    async (request, reply) => {
      const url = await admitWebhookTarget(
        request.body.url,
        options.targets,
        'webhook_target_refused',
      );
      const endpoint = await endpoints.create(url);
      request.log.info(
        { endpoint_id: endpoint.id },
        `Webhook endpoint ${redactUrl(endpoint.url, { everyValue: true })} created`,
      );
      return reply.code(201).header('location', `/webhook-endpoints/${endpoint.id}`).send(endpoint);
    },
  );

  api.get(
    '/webhook-endpoints',
    {
      schema: {
        tags,
        summary: 'List webhook endpoints',
        response: { 200: Type.Array(WebhookEndpointSchema) },
      },
    },
    async () => endpoints.list(),
  );

  api.get(
    '/webhook-endpoints/:id',
    {
      schema: {
        tags,
        summary: 'Get one webhook endpoint',
        params: IdParams,
        response: { 200: WebhookEndpointSchema, ...problemResponses(404) },
      },
    },
    async (request) => endpoints.get(request.params.id),
  );

  api.delete(
    '/webhook-endpoints/:id',
    {
      schema: {
        tags,
        summary: 'Delete a webhook endpoint; its undelivered messages are cancelled',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      await endpoints.delete(request.params.id);
      return reply.code(204).send(null);
    },
  );

  api.get(
    '/webhook-endpoints/:id/secret',
    {
      // A secret lets its holder forge events: reading it is not for API_READ_TOKEN.
      config: { adminOnly: true },
      schema: {
        tags,
        summary: "The endpoint's signing secret (and the previous one during a rotation)",
        params: IdParams,
        response: { 200: WebhookSecretSchema, ...problemResponses(404) },
      },
    },
    async (request) => endpoints.secrets(request.params.id),
  );

  api.post(
    '/webhook-endpoints/:id/rotate-secret',
    {
      schema: {
        tags,
        summary: 'Replace the signing secret; the old one keeps signing alongside for 24 h',
        params: IdParams,
        response: { 200: WebhookSecretSchema, ...problemResponses(404) },
      },
    },
    async (request) => endpoints.rotateSecret(request.params.id),
  );

  api.post(
    '/webhook-endpoints/:id/enable',
    {
      schema: {
        tags,
        summary:
          'Re-enable a disabled endpoint and catch it up: what was cancelled, and what was recorded while it was disabled, is sent',
        params: IdParams,
        response: { 200: WebhookEndpointSchema, ...problemResponses(404) },
      },
    },
    async (request) => endpoints.enable(request.params.id),
  );

  api.get(
    '/webhook-endpoints/:id/attempts',
    {
      schema: {
        tags,
        summary: 'Recent delivery attempts to this endpoint, newest first',
        params: IdParams,
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(WebhookAttemptSchema), ...problemResponses(404) },
      },
    },
    async (request) => endpoints.attempts(request.params.id, request.query.limit),
  );
};
