import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { HttpProblem, notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { sendPage } from '../core/pagination.js';
import { traceparentOf } from '../core/tracing.js';
import { PageQuery, paginationHeaders, Uuid } from '../core/schemas.js';
import { CustomerChangeSchema, CustomerSchema, NewCustomerSchema } from '../contracts/customers.js';
import { CustomerEventSchema } from '../contracts/customer-events.js';
import type { CustomerStore } from './customers.js';
import type { EventLog } from './events.js';
import { etagOf, VersionCondition } from './versions.js';

const CustomerId = Type.Object({ id: Uuid('The customer id.') });
/** The condition of a change or deletion (`VersionCondition.fromIfMatch` reads it). */
const IfMatchHeaders = Type.Object({
  'if-match': Type.Optional(
    Type.String({ description: 'The ETag of the version you read, e.g. "3"; or *.' }),
  ),
});
const etagHeader = {
  etag: { type: 'string', description: 'The customer’s version as a strong entity tag, e.g. "3".' },
};

export interface CustomerRoutesOptions {
  customers: CustomerStore;
}

export const customerRoutes: FastifyPluginAsync<CustomerRoutesOptions> = async (app, options) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { customers } = options;

  api.post(
    '/customers',
    {
      schema: {
        tags: ['customers'],
        summary: 'Create a customer',
        body: NewCustomerSchema,
        response: {
          201: { ...CustomerSchema, headers: etagHeader },
          ...problemResponses(409),
        },
      },
    },
    async (request, reply) => {
      const customer = await customers.create(request.body, traceparentOf(request.span));
      request.log.info({ customer_id: customer.id }, `Created customer ${customer.id}`);
      return reply
        .code(201)
        .header('location', `/customers/${customer.id}`)
        .header('etag', etagOf(customer.version))
        .send(customer);
    },
  );

  api.patch(
    '/customers/:id',
    {
      schema: {
        tags: ['customers'],
        summary: 'Change a customer’s name or email',
        description:
          'Changes the fields given and records a `customer.updated` event with the new state and version, in one transaction. With `If-Match: "<version>"` (the `ETag` you read) the change is made only if nobody changed the customer since: else 412. A change that gives no field a new value answers the customer as it is, and records nothing.',
        params: CustomerId,
        headers: IfMatchHeaders,
        body: CustomerChangeSchema,
        response: {
          200: { ...CustomerSchema, headers: etagHeader },
          ...problemResponses(404, 409, 412),
        },
      },
    },
    async (request, reply) => {
      const condition = VersionCondition.fromIfMatch(request.headers['if-match']);
      const customer = await customers.update(
        request.params.id,
        request.body,
        condition,
        traceparentOf(request.span),
      );
      request.log.info(
        { customer_id: customer.id },
        `Customer updated: ID ${customer.id} (version ${customer.version})`,
      );
      return reply.header('etag', etagOf(customer.version)).send(customer);
    },
  );

  api.get(
    '/customers',
    {
      schema: {
        tags: ['customers'],
        summary: 'List customers in creation order, one page at a time, or find one by email',
        querystring: Type.Object(
          {
            ...PageQuery,
            // The same email rule as a customer's: a value none could have is refused (400).
            email: Type.Optional({
              ...NewCustomerSchema.properties.email,
              description:
                'Only the customer with this email, in any letter case: a list of one, or empty.',
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(CustomerSchema, { headers: paginationHeaders }) },
      },
    },
    async (request, reply) => {
      const { email, ...page } = request.query;
      if (email !== undefined) {
        if (page.after !== undefined) {
          throw new HttpProblem(
            400,
            'invalid_request',
            'email finds one customer: leave out after, which pages through the whole list.',
          );
        }
        const found = await customers.findByEmail(email);
        return found ? [found] : [];
      }
      return sendPage(request, reply, await customers.list(page), page);
    },
  );

  api.delete(
    '/customers/:id',
    {
      schema: {
        tags: ['customers'],
        summary: 'Delete a customer, erasing their name and email',
        description:
          'Deletes the customer and records a `customer.deleted` event (id, next version, time; nothing personal), in one transaction. The CRM keeps only a tombstone: the earlier events of the customer leave the feed, so no reader can find the name or email again. The email is free for a new customer, who gets a new id. `If-Match` makes the deletion conditional (412 when stale).',
        params: CustomerId,
        headers: IfMatchHeaders,
        response: {
          204: Type.Null({ description: 'Deleted.' }),
          ...problemResponses(404, 412),
        },
      },
    },
    async (request, reply) => {
      const condition = VersionCondition.fromIfMatch(request.headers['if-match']);
      const deleted = await customers.delete(
        request.params.id,
        condition,
        traceparentOf(request.span),
      );
      request.log.info(
        { customer_id: deleted.id },
        `Customer deleted: ID ${deleted.id} (version ${deleted.version})`,
      );
      return reply.code(204).send(null);
    },
  );

  api.get(
    '/customers/:id',
    {
      schema: {
        tags: ['customers'],
        summary: 'Get one customer',
        params: CustomerId,
        response: { 200: { ...CustomerSchema, headers: etagHeader }, ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const customer = await customers.get(request.params.id);
      if (!customer) throw notFound(`No customer has id ${request.params.id}.`);
      return reply.header('etag', etagOf(customer.version)).send(customer);
    },
  );
};

export interface EventRoutesOptions {
  events: EventLog;
}

/** Longest a feed request may wait for new events, in ms. */
export const MAX_FEED_WAIT_MS = 30_000;

export const eventRoutes: FastifyPluginAsync<EventRoutesOptions> = async (app, options) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { events } = options;

  api.get(
    '/events',
    {
      // The schema documents the union of event types; serializing through it would check each
      // event against every branch. The events are built from the contract's types: stringify.
      serializerCompiler: () => (data) => JSON.stringify(data),
      schema: {
        tags: ['change feed'],
        summary: 'Read customer events after a position (long-poll with wait)',
        description:
          'Events come in strictly increasing `position`, and a position is only ever visible once every lower one is: a consumer that stores the last position it handled and asks for `after=<that>` never skips an event, also while customers are created concurrently. With `wait`, an empty answer is held until an event arrives or the wait ends.',
        querystring: Type.Object(
          {
            after: Type.Integer({
              minimum: 0,
              // Positions are JavaScript numbers; a larger one is not exact and overflows bigint.
              maximum: Number.MAX_SAFE_INTEGER,
              default: 0,
              description: 'Return events after this position (0 = from the start).',
            }),
            limit: PageQuery.limit,
            wait: Type.Integer({
              minimum: 0,
              maximum: MAX_FEED_WAIT_MS,
              default: 0,
              description: `When nothing is new, wait up to this many ms for an event (0–${MAX_FEED_WAIT_MS}).`,
            }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Array(CustomerEventSchema, { headers: paginationHeaders }),
        },
      },
    },
    async (request, reply) => {
      const { after, limit, wait } = request.query;
      const items = await events.waitAfter(after, limit + 1, wait);
      return sendPage(
        request,
        reply,
        { items: items.slice(0, limit), hasMore: items.length > limit },
        { limit, after },
        (event) => event.position,
      );
    },
  );
};
