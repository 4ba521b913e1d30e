import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  TIMELINE_LIMIT_MAX,
  CustomerLookupSchema,
  TimelineSchema,
  type Timeline,
  type TimelineEntry,
} from '../contracts/timeline.js';
import { HttpProblem, notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { Uuid } from '../core/schemas.js';
import { toDelivery, upstreamUnavailable } from './routes.js';
import type { CrmClient } from './crm-client.js';
import { ALL_CUSTOMERS } from './migrations.js';
import type { TimelineRow } from './store/timeline.js';
import type { SyncStore } from './store/sync-store.js';

export interface TimelineRoutesOptions {
  store: SyncStore;
  /** Finds a customer's id by email in the CRM. */
  crm: Pick<CrmClient, 'findCustomerIdByEmail'>;
}

function toEntry(row: TimelineRow): TimelineEntry {
  return {
    seq: Number(row.seq),
    at: new Date(row.at).toISOString(),
    kind: row.kind,
    result: row.result,
    source: row.source,
    event_type: row.event_type,
    event_id: row.event_id,
    message_id: row.message_id,
    version: row.version === null ? null : Number(row.version),
    operation: row.operation,
    outcome: row.outcome,
    duration_ms: row.duration_ms,
    status: row.status,
    error: row.error,
    trace_id: row.trace_id,
    instance: row.instance,
    action: row.action,
    all_customers: row.customer_id === ALL_CUSTOMERS,
  };
}

/**
 * `GET /api/customers/{id}/timeline`: what happened to one customer, step by step; and
 * `GET /api/customers/lookup?email=`: which customer that is, asked of the CRM.
 */
export const timelineRoutes: FastifyPluginAsync<TimelineRoutesOptions> = async (app, options) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    '/api/customers/lookup',
    {
      schema: {
        tags: ['admin'],
        summary: 'Find a customer’s id by email, in the CRM (any letter case)',
        querystring: Type.Object(
          {
            email: Type.String({
              minLength: 3,
              maxLength: 320,
              description: 'The email, in any letter case.',
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: CustomerLookupSchema, ...problemResponses(404, 502) },
      },
    },
    async (request) => {
      const { email } = request.query;
      if (!email.includes('@')) {
        throw new HttpProblem(
          400,
          'invalid_request',
          `email=${email} is not an email address; give one such as jane.doe@example.com, or trace the customer by id.`,
        );
      }
      let customerId: string | undefined;
      try {
        customerId = await options.crm.findCustomerIdByEmail(email);
      } catch (error) {
        throw upstreamUnavailable(
          request,
          error,
          'crm_unavailable',
          'The CRM did not answer who has that email (see the service log). Try again, or trace the customer by id.',
        );
      }
      if (customerId === undefined) {
        throw notFound(
          `No customer in the CRM has the email ${email}. A deleted customer's email is erased: trace them by id.`,
        );
      }
      return { customer_id: customerId };
    },
  );
  api.get(
    '/api/customers/:customerId/timeline',
    {
      schema: {
        tags: ['admin'],
        summary:
          'One customer’s timeline: every event received, every attempt at Inventory, every operator action',
        params: Type.Object({ customerId: Uuid('The CRM customer id.') }),
        querystring: Type.Object(
          {
            after: Type.Integer({
              minimum: 0,
              maximum: Number.MAX_SAFE_INTEGER,
              default: 0,
              description: 'Only entries after this `seq` (the previous answer’s `next_after`).',
            }),
            limit: Type.Integer({
              minimum: 1,
              maximum: TIMELINE_LIMIT_MAX,
              default: 200,
              description: `At most this many entries (default 200, at most ${TIMELINE_LIMIT_MAX}).`,
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: TimelineSchema, ...problemResponses(404) },
      },
    },
    async (request): Promise<Timeline> => {
      // A UUID in capitals names the same customer.
      const customerId = request.params.customerId.toLowerCase();
      const { after, limit } = request.query;
      // One more than asked tells whether more follow.
      const [delivery, rows] = await Promise.all([
        options.store.readModels.get(customerId),
        options.store.timeline.read(customerId, after, limit + 1),
      ]);
      if (!delivery && rows.length === 0 && after === 0) {
        throw notFound(
          `The integration service has no record of customer ${customerId}: no source has reported it yet. Check the id in the CRM (GET /customers/${customerId}).`,
        );
      }
      const entries = rows.slice(0, limit).map(toEntry);
      return {
        customer_id: customerId,
        delivery: delivery ? toDelivery(delivery) : null,
        entries,
        next_after: rows.length > limit ? entries[entries.length - 1]!.seq : null,
      };
    },
  );
};
