import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import { Counter } from 'prom-client';
import { Type } from 'typebox';
import { HttpProblem, notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { sendPage } from '../core/pagination.js';
import { PageQuery, Uuid, paginationHeaders } from '../core/schemas.js';
import { fingerprintRequest, IdempotencyKeys, type StoredResponse } from './idempotency.js';
import type { InventoryTables } from './migrations.js';
import {
  DEFAULT_KIND,
  NewPackageRequestSchema,
  PackageRequestSchema,
  packageRequests,
  type CreateOutcome,
} from './package-requests.js';

export interface PackageRequestRoutesOptions {
  db: Kysely<InventoryTables>;
  idempotencyKeys: IdempotencyKeys;
}

const PATH = '/package-requests';

function toResponse(outcome: CreateOutcome): StoredResponse {
  if (outcome.created) return { status: 201, body: outcome.request };
  const existing = outcome.existing;
  return {
    status: 409,
    body: new HttpProblem(
      409,
      'package_request_exists',
      `Customer ${existing.customer_id} already has a ${existing.kind} request (id ${existing.id}); each customer gets one per kind.`,
      { existing_request: existing },
    ).toProblem(PATH),
  };
}

function send(reply: FastifyReply, response: StoredResponse) {
  const body = response.body as { id?: string; existing_request?: { id: string } };
  const id = body.id ?? body.existing_request?.id;
  if (id) reply.header('location', `${PATH}/${id}`);
  if (response.status >= 400) reply.type('application/problem+json; charset=utf-8');
  return reply.code(response.status).send(response.body);
}

export const packageRequestRoutes: FastifyPluginAsync<PackageRequestRoutesOptions> = async (
  app,
  options,
) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { db, idempotencyKeys } = options;
  const created = new Counter({
    name: 'inventory_package_requests_created_total',
    help: 'Package requests created.',
    registers: [app.metrics],
  });
  const answered = new Counter({
    name: 'inventory_create_responses_total',
    help: 'Answers to POST /package-requests by outcome: created, duplicate, replayed.',
    labelNames: ['outcome'],
    registers: [app.metrics],
  });

  api.post(
    PATH,
    {
      schema: {
        tags: ['package requests'],
        summary: 'Request a package for a customer (idempotent with Idempotency-Key)',
        description:
          'One request per customer and kind. With an `Idempotency-Key` header, a retry with the same body gets the first response again (with `idempotent-replayed: true`); the same key with another body gets 422; a retry while the first is still running gets 409 with `Retry-After`.',
        headers: Type.Object({
          'idempotency-key': Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 255,
              pattern: '^[\\x21-\\x7e]+$',
              description:
                'A unique key per intended request, e.g. `welcome-package:<customer id>`.',
            }),
          ),
        }),
        body: NewPackageRequestSchema,
        response: {
          201: PackageRequestSchema,
          ...problemResponses(409, 422),
        },
      },
    },
    async (request, reply) => {
      const input = {
        customer_id: request.body.customer_id,
        kind: request.body.kind ?? DEFAULT_KIND,
      };
      const record = (response: StoredResponse) => {
        if (response.status === 201) {
          created.inc();
          request.log.info(
            { customer_id: input.customer_id },
            `Created package request for customer: ${input.customer_id}`,
          );
        }
        answered.inc({ outcome: response.status === 201 ? 'created' : 'duplicate' });
        return response;
      };

      const key = request.headers['idempotency-key'];
      if (key === undefined) {
        return send(reply, record(toResponse(await packageRequests.create(db, input))));
      }

      const claim = await idempotencyKeys.claim(key, fingerprintRequest('POST', PATH, input));
      if (claim.kind === 'replay') {
        answered.inc({ outcome: 'replayed' });
        reply.header('idempotent-replayed', 'true');
        return send(reply, claim.response);
      }
      try {
        const response = await db.transaction().execute(async (trx) => {
          const outcome = toResponse(await packageRequests.create(trx, input));
          if (!(await idempotencyKeys.complete(trx, key, claim.claimId, outcome))) {
            throw new HttpProblem(
              409,
              'idempotency_key_in_flight',
              `Idempotency-Key "${key}" was taken over by another request after this one ran too long; retry to get its response.`,
              {},
              { 'retry-after': '1' },
            );
          }
          return outcome;
        });
        return send(reply, record(response));
      } catch (error) {
        if (!(error instanceof HttpProblem)) {
          // Nothing was committed: free the key so the client's retry can run at once.
          await idempotencyKeys.release(key, claim.claimId).catch((releaseError: unknown) => {
            request.log.warn({ err: releaseError }, 'Could not release the idempotency key');
          });
        }
        throw error;
      }
    },
  );

  api.get(
    PATH,
    {
      schema: {
        tags: ['package requests'],
        summary: 'List package requests in creation order, one page at a time',
        querystring: Type.Object(
          {
            customer_id: Type.Optional(Uuid('Only the requests for this customer.')),
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(PackageRequestSchema, { headers: paginationHeaders }) },
      },
    },
    async (request, reply) =>
      sendPage(request, reply, await packageRequests.list(db, request.query), request.query),
  );

  api.get(
    `${PATH}/:id`,
    {
      schema: {
        tags: ['package requests'],
        summary: 'Get one package request',
        params: Type.Object({ id: Uuid('The package request id.') }),
        response: { 200: PackageRequestSchema, ...problemResponses(404) },
      },
    },
    async (request) => {
      const found = await packageRequests.get(db, request.params.id);
      if (!found) throw notFound(`No package request has id ${request.params.id}.`);
      return found;
    },
  );
};
