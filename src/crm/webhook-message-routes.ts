import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { HttpProblem } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { sendPage } from '../core/pagination.js';
import { PageQuery, paginationHeaders, Uuid } from '../core/schemas.js';
import { WebhookMessageSchema, WebhookMessageStateSchema } from '../contracts/webhook-endpoints.js';
import type { WebhookEndpoints } from './webhook-endpoints.js';
import { REPLAYABLE_STATES } from './webhook-messages.js';

export interface WebhookMessageRoutesOptions {
  endpoints: WebhookEndpoints;
}

const IdParams = Type.Object({ id: Uuid('The endpoint id.') });

/** Each endpoint's messages: what was sent, what is still tried, what was given up; replays. */
export const webhookMessageRoutes: FastifyPluginAsync<WebhookMessageRoutesOptions> = async (
  app,
  { endpoints },
) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const tags = ['webhook endpoints'];

  api.get(
    '/webhook-endpoints/:id/messages',
    {
      schema: {
        tags,
        summary: "The endpoint's messages in feed order, optionally in one state",
        description:
          '`?state=failed` lists what the CRM gave up on (attempts used up, or 410 Gone); `?state=cancelled` what was called off when the endpoint was disabled or deleted.',
        params: IdParams,
        querystring: Type.Object(
          {
            ...PageQuery,
            after: Type.Optional(
              Uuid('Return messages after the one of this event (the last of the previous page).'),
            ),
            state: Type.Optional(WebhookMessageStateSchema),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Array(WebhookMessageSchema, { headers: paginationHeaders }),
          ...problemResponses(404),
        },
      },
    },
    async (request, reply) => {
      await endpoints.mustExist(request.params.id);
      const page = await endpoints.messages.list(request.params.id, request.query);
      return sendPage(request, reply, page, request.query, (message) => message.event_id);
    },
  );

  api.post(
    '/webhook-endpoints/:id/messages/replay',
    {
      schema: {
        tags,
        summary:
          "Send the endpoint's failed and cancelled messages again, from their first attempt",
        params: IdParams,
        querystring: Type.Object(
          {
            state: Type.Optional(
              Type.Enum(REPLAYABLE_STATES, {
                description: 'Only the messages in this state (default: failed and cancelled).',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            replayed: Type.Integer({ description: 'Messages set to be sent again.' }),
          }),
          ...problemResponses(404, 409),
        },
      },
    },
    async (request) => {
      const endpoint = await endpoints.get(request.params.id);
      if (endpoint.status === 'disabled') {
        throw new HttpProblem(
          409,
          'endpoint_disabled',
          `The endpoint is disabled (${endpoint.disabled_reason ?? 'no reason recorded'}), so nothing would be sent; POST /webhook-endpoints/${endpoint.id}/enable re-enables it and sends what it missed.`,
        );
      }
      return { replayed: await endpoints.messages.replay(request.params.id, request.query.state) };
    },
  );
};
