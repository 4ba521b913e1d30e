import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { sendPage } from '../core/pagination.js';
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
    async (request, reply) =>
      sendPage(request, reply, await customers.list(request.query), request.query),
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
