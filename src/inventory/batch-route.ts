import { HttpProblem, ProblemSchema, type Problem } from '../core/errors.js';
import { problemResponses, type HttpServer } from '../core/http.js';
import {
  BATCH_MAX_ITEMS,
  BatchRequestSchema,
  BatchResponseSchema,
  type BatchItem,
  type BatchResponse,
  type PackageRequest,
} from '../contracts/package-requests.js';
import type { BatchAnswer } from './idempotency.js';
import {
  createInputOf,
  fingerprintOf,
  PATH,
  routeOf,
  runMany,
  type Answered,
  type Operation,
} from './operations.js';
import type { RouteContext } from './single-route.js';

/**
 * Largest batch body accepted, in bytes: 500 items with the longest kind and key, JSON-escaped
 * and pretty-printed, fit; the 64 KiB limit of other routes would not even take 500 plain items.
 */
export const BATCH_BODY_LIMIT_BYTES = 512 * 1024;

function operationOf(item: BatchItem): Operation {
  switch (item.op) {
    case undefined:
    case 'create':
      return { op: 'create', input: createInputOf(item) };
    case 'update': {
      const { recipient_name, recipient_email, customer_version } = item;
      return {
        op: 'update',
        id: item.id,
        change: { recipient_name, recipient_email, customer_version },
      };
    }
    default:
      return { op: item.op, id: item.id };
  }
}

type Result = BatchResponse['results'][number];

function resultOf(answer: BatchAnswer, instance: string): Result {
  const response =
    answer.kind === 'refused'
      ? { status: answer.problem.status, body: answer.problem.toProblem(instance) }
      : answer.response;
  return {
    status: response.status as Result['status'],
    replayed: answer.kind === 'replayed',
    body: response.body as PackageRequest | Problem,
  };
}

/** `POST /package-requests/batch`: many creates and changes, each answered as its single route. */
export function batchRoute(api: HttpServer, context: RouteContext): void {
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
        summary:
          'Request packages for many customers, and change many requests, in one call (idempotent per item)',
        description: `Up to ${BATCH_MAX_ITEMS} items, each answered in \`results\` (same order) exactly as its single route would answer it with the item's \`idempotency_key\` as its \`Idempotency-Key\` header, and sharing its keys. An item's \`op\` says which: \`create\` (the default) as \`POST /package-requests\`; \`update\` as \`PATCH /package-requests/{id}\`; \`cancel\` and \`ship\` as \`POST /package-requests/{id}/cancel\` and \`…/ship\`. Each result is \`201\` with the created request or \`409 package_request_exists\` naming the existing one; \`200\` with the changed (or unchanged) request; \`404\`; \`409\` \`customer_version_stale\`, \`package_request_shipped\` or \`package_request_cancelled\`; \`replayed: true\` with the stored answer when the key was already used for the same item (on either route, or earlier in the batch); \`422 idempotency_key_reused\` when it was used for a different one; \`409 idempotency_key_in_flight\` while a request holding the key is still running (retry that item). A 404 is stored under no key. Creates run first, then the changes, those of one request in item order. The batch commits as a whole; when concurrent requests keep claiming its keys the whole call answers 409 with \`Retry-After\`.`,
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
      const operations = request.body.items.map(operationOf);
      const ran: (Answered | undefined)[] = [];
      const answers = await context.idempotencyKeys.answerMany(
        // Digested only under a key: an item without one is never compared with anything.
        request.body.items.map(({ idempotency_key: key }, index) =>
          key === undefined ? {} : { key, fingerprint: fingerprintOf(operations[index]!) },
        ),
        async (trx, indexes) => {
          const answered = await runMany(
            trx,
            indexes.map((index) => operations[index]!),
          );
          indexes.forEach((index, i) => (ran[index] = answered[i]));
          return answered.map(({ response }) => response);
        },
      );
      context.telemetry.recordBatch(request.log, operations, answers, ran);
      if (
        operations.some(
          (operation, index) => operation.op === 'cancel' && ran[index]?.outcome === 'changed',
        )
      ) {
        context.afterErasure();
      }
      return {
        results: answers.map((answer, index) => resultOf(answer, routeOf(operations[index]!).path)),
      };
    },
  );
}
