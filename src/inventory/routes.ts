import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import { Counter } from 'prom-client';
import { Type } from 'typebox';
import { HttpProblem, notFound, ProblemSchema, type Problem } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { sendPage } from '../core/pagination.js';
import { PageQuery, Uuid, paginationHeaders } from '../core/schemas.js';
import {
  fingerprintRequest,
  IdempotencyKeys,
  type BatchAnswer,
  type StoredResponse,
} from './idempotency.js';
import type { InventoryTables } from './migrations.js';
import { packageRequests, type CreateOutcome } from './package-requests.js';
import {
  BATCH_MAX_ITEMS,
  BatchRequestSchema,
  BatchResponseSchema,
  DEFAULT_KIND,
  IdempotencyKeySchema,
  NewPackageRequestSchema,
  PackageRequestSchema,
  type PackageRequest,
} from '../contracts/package-requests.js';

export interface PackageRequestRoutesOptions {
  db: Kysely<InventoryTables>;
  idempotencyKeys: IdempotencyKeys;
}

const PATH = '/package-requests';

/**
 * Largest batch body accepted, in bytes: 500 items with the longest kind and key, JSON-escaped
 * and pretty-printed, fit; the 64 KiB limit of other routes would not even take 500 plain items.
 */
export const BATCH_BODY_LIMIT_BYTES = 512 * 1024;

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

function outcomeOf(answer: BatchAnswer): 'created' | 'duplicate' | 'replayed' | 'refused' {
  if (answer.kind !== 'ran') return answer.kind;
  return answer.response.status === 201 ? 'created' : 'duplicate';
}

function toResult(answer: BatchAnswer) {
  const response =
    answer.kind === 'refused'
      ? { status: answer.problem.status, body: answer.problem.toProblem(PATH) }
      : answer.response;
  return {
    status: response.status as 201 | 409 | 422,
    replayed: answer.kind === 'replayed',
    body: response.body as PackageRequest | Problem,
  };
}

/** The one line per created request that operators follow (the seed's story). */
function logCreated(log: FastifyBaseLogger, customerId: string): void {
  log.info({ customer_id: customerId }, `Created package request for customer: ${customerId}`);
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
    help: 'Answers to POST /package-requests, and to each item of a batch, by outcome: created, duplicate, replayed.',
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
        headers: Type.Object({ 'idempotency-key': Type.Optional(IdempotencyKeySchema) }),
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
          logCreated(request.log, input.customer_id);
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

  api.post(
    `${PATH}/batch`,
    {
      bodyLimit: BATCH_BODY_LIMIT_BYTES,
      // The shared handler's 413 names the 64 KiB limit of other routes; say this route's instead.
      errorHandler: (error) => {
        if (error.code !== 'FST_ERR_CTP_BODY_TOO_LARGE') throw error;
        throw new HttpProblem(
          413,
          'body_too_large',
          `The request body is larger than ${BATCH_BODY_LIMIT_BYTES} bytes; split the batch.`,
        );
      },
      schema: {
        tags: ['package requests'],
        summary: 'Request packages for many customers in one call (idempotent per item)',
        description: `Up to ${BATCH_MAX_ITEMS} items, each answered in \`results\` (same order) exactly as \`POST /package-requests\` would answer it with the item's \`idempotency_key\` as its \`Idempotency-Key\` header, and sharing its keys: \`201\` with the created request, or \`409 package_request_exists\` naming the existing one (both stored under the key); \`replayed: true\` with the stored answer when the key was already used for the same item (on either route, or earlier in the batch); \`422 idempotency_key_reused\` when it was used for a different one; \`409 idempotency_key_in_flight\` while a request holding the key is still running (retry that item). Items without a key are created or answered 409. The batch commits as a whole; when concurrent requests keep claiming its keys the whole call answers 409 with \`Retry-After\`.`,
        body: BatchRequestSchema,
        response: {
          200: BatchResponseSchema,
          ...problemResponses(409),
          413: {
            description: `The body is larger than ${BATCH_BODY_LIMIT_BYTES / 1024} KiB.`,
            content: { 'application/problem+json': { schema: ProblemSchema } },
          },
        },
      },
    },
    async (request) => {
      const items = request.body.items.map((item) => ({
        key: item.idempotency_key,
        input: { customer_id: item.customer_id, kind: item.kind ?? DEFAULT_KIND },
      }));
      const answers = await idempotencyKeys.answerMany(
        items.map(({ key, input }) => ({
          key,
          fingerprint: fingerprintRequest('POST', PATH, input),
        })),
        async (trx, indexes) =>
          (
            await packageRequests.createMany(
              trx,
              indexes.map((index) => items[index]!.input),
            )
          ).map(toResponse),
      );

      const counts = { created: 0, duplicate: 0, replayed: 0, refused: 0 };
      answers.forEach((answer, index) => {
        const outcome = outcomeOf(answer);
        counts[outcome] += 1;
        if (outcome === 'created') logCreated(request.log, items[index]!.input.customer_id);
      });
      created.inc(counts.created);
      for (const outcome of ['created', 'duplicate', 'replayed'] as const) {
        if (counts[outcome] > 0) answered.inc({ outcome }, counts[outcome]);
      }
      request.log.info(
        { items: answers.length, ...counts },
        `Answered a batch of ${answers.length} package requests: ${counts.created} created, ${counts.duplicate} duplicate, ${counts.replayed} replayed, ${counts.refused} refused`,
      );
      return { results: answers.map(toResult) };
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
