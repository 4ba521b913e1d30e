import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import type { DialectName } from '../core/db.js';
import { Type } from 'typebox';
import { notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { sendPage } from '../core/pagination.js';
import { PageQuery, Uuid, paginationHeaders } from '../core/schemas.js';
import { NewPackageRequestSchema, PackageRequestSchema } from '../contracts/package-requests.js';
import { batchRoute } from './batch-route.js';
import { changeRoutes } from './change-routes.js';
import type { IdempotencyKeys } from './idempotency.js';
import type { InventoryTables } from './migrations.js';
import { createInputOf, PATH } from './operations.js';
import { packageRequests } from './package-requests.js';
import { requestsByCustomerRoute } from './requests-by-customer.js';
import {
  answerRequest,
  IDEMPOTENCY_DESCRIPTION,
  IdempotencyHeaders,
  type RouteContext,
} from './single-route.js';
import { Telemetry } from './telemetry.js';

export { BATCH_BODY_LIMIT_BYTES } from './batch-route.js';

export interface PackageRequestRoutesOptions {
  db: Kysely<InventoryTables>;
  dialect: DialectName;
  idempotencyKeys: IdempotencyKeys;
  /** Runs after a cancel erased a recipient (e.g. `Database.scrubSoon`). Default: nothing. */
  afterErasure?: () => void;
}

/**
 * Inventory's routes: create, read and list package requests here; their changes
 * (`change-routes.ts`) and the batch form of all (`batch-route.ts`) beside.
 */
export const packageRequestRoutes: FastifyPluginAsync<PackageRequestRoutesOptions> = async (
  app,
  options,
) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const context: RouteContext = {
    ...options,
    afterErasure: options.afterErasure ?? (() => {}),
    telemetry: new Telemetry(app.metrics),
  };
  const { db } = context;

  api.post(
    PATH,
    {
      schema: {
        tags: ['package requests'],
        summary: 'Request a package for a customer (idempotent with Idempotency-Key)',
        description: `One request per customer and kind, \`pending\` until it is shipped or cancelled. The recipient fields and \`customer_version\` are optional. ${IDEMPOTENCY_DESCRIPTION}`,
        headers: IdempotencyHeaders,
        body: NewPackageRequestSchema,
        response: {
          201: PackageRequestSchema,
          ...problemResponses(409, 422),
        },
      },
    },
    async (request, reply) =>
      answerRequest(context, request, reply, {
        op: 'create',
        input: createInputOf(request.body),
      }),
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

  await api.register(requestsByCustomerRoute, { db: options.db, dialect: options.dialect });
  changeRoutes(api, context);
  batchRoute(api, context);
};
