import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { HttpProblem, notFound } from '../core/errors.js';
import { problemResponses, setNextPageLink } from '../core/http.js';
import { PageQuery, paginationHeaders, Uuid } from '../core/schemas.js';
import { CustomerSchema, NewCustomerSchema, type CustomerStore } from './customers.js';

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
          201: CustomerSchema,
          ...problemResponses(409),
        },
      },
    },
    async (request, reply) => {
      const customer = await customers.create(request.body);
      request.log.info({ customer_id: customer.id }, `Created customer ${customer.id}`);
      return reply.code(201).header('location', `/customers/${customer.id}`).send(customer);
    },
  );

  api.get(
    '/customers',
    {
      schema: {
        tags: ['customers'],
        summary: 'List customers in creation order, one page at a time',
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: Type.Array(CustomerSchema, { headers: paginationHeaders }) },
      },
    },
    async (request, reply) => {
      const { limit, after } = request.query;
      const page = await customers.list({ limit, after });
      if (!page) {
        throw new HttpProblem(
          400,
          'unknown_cursor',
          `after=${after} is not the id of any customer; pass the last id of the previous page.`,
        );
      }
      const last = page.items.at(-1);
      if (page.hasMore && last) setNextPageLink(request, reply, { limit, after: last.id });
      return page.items;
    },
  );

  api.get(
    '/customers/:id',
    {
      schema: {
        tags: ['customers'],
        summary: 'Get one customer',
        params: Type.Object({ id: Uuid('The customer id.') }),
        response: { 200: CustomerSchema, ...problemResponses(404) },
      },
    },
    async (request) => {
      const customer = await customers.get(request.params.id);
      if (!customer) throw notFound(`No customer has id ${request.params.id}.`);
      return customer;
    },
  );
};
