import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  AlertEndpointSchema,
  NewAlertEndpointAnswerSchema,
  NewAlertEndpointSchema,
} from '../../contracts/alerts.js';
import { redactUrl } from '../../core/config.js';
import { problemResponses } from '../../core/http.js';
import { Uuid } from '../../core/schemas.js';
import { admitWebhookTarget, type WebhookTargetPolicy } from '../../core/webhooks/targets.js';
import type { AlertEndpoints } from './endpoints.js';

export interface AlertRoutesOptions {
  endpoints: AlertEndpoints;
  /** Where endpoints may point besides the public internet. */
  targets: WebhookTargetPolicy;
}

const IdParams = Type.Object({ id: Uuid('The alert endpoint id.') });

/** Where operational alerts go: `POST`, `GET` and `DELETE /api/alert-endpoints`. */
export const alertRoutes: FastifyPluginAsync<AlertRoutesOptions> = async (app, options) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { endpoints: alertEndpoints } = options;
  const tags = ['alerts'];

  api.post(
    '/api/alert-endpoints',
    {
      schema: {
        tags,
        summary: 'Send operational alerts (dead letters, circuit, backlog, stalled feed) to a URL',
        description:
          'Each alert is POSTed as Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>` made with the returned secret, which is shown only in this answer. Failed calls are retried with backoff until ALERT_GIVE_UP_AFTER_MS.',
        body: NewAlertEndpointSchema,
        response: { 201: NewAlertEndpointAnswerSchema, ...problemResponses(409, 422) },
      },
    },
    async (request, reply) => {
      const url = await admitWebhookTarget(
        request.body.url,
        options.targets,
        'alert_target_refused',
      );
      const endpoint = await alertEndpoints.create(url);
      request.log.info(
        { endpoint_id: endpoint.id },
        `Alert endpoint ${redactUrl(endpoint.url, { everyValue: true })} registered`,
      );
      return reply
        .code(201)
        .header('location', `/api/alert-endpoints/${endpoint.id}`)
        .send(endpoint);
    },
  );

  api.get(
    '/api/alert-endpoints',
    {
      schema: {
        tags,
        summary: 'List alert endpoints (their secrets are not shown)',
        response: { 200: Type.Array(AlertEndpointSchema) },
      },
    },
    async () => alertEndpoints.list(),
  );

  api.delete(
    '/api/alert-endpoints/:id',
    {
      schema: {
        tags,
        summary: 'Stop sending alerts to an endpoint; its alerts not yet sent are cancelled',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      await alertEndpoints.delete(request.params.id);
      return reply.code(204).send(null);
    },
  );
};
