import { Type } from 'typebox';
import { problemResponses, type HttpServer } from '../core/http.js';
import { Uuid } from '../core/schemas.js';
import { PackageRequestChangeSchema, PackageRequestSchema } from '../contracts/package-requests.js';
import { PATH } from './operations.js';
import type { Transition } from './package-requests.js';
import {
  answerRequest,
  IDEMPOTENCY_DESCRIPTION,
  IdempotencyHeaders,
  type RouteContext,
} from './single-route.js';

/** What every change route's schema shares: its request id, key header and answers. */
const CHANGE_SCHEMA = {
  tags: ['package requests'],
  headers: IdempotencyHeaders,
  params: Type.Object({ id: Uuid('The package request id.') }),
  response: { 200: PackageRequestSchema, ...problemResponses(404, 409, 422) },
};

const TRANSITION_DOCS: Record<Transition, { summary: string; description: string }> = {
  cancel: {
    summary: 'Cancel a pending package request, e.g. when its customer leaves',
    description:
      'A pending request becomes `cancelled` (200) and its `recipient_name` and `recipient_email` are erased (null), in the request and in every answer stored about it under an idempotency key; one already cancelled is answered 200 unchanged; a shipped one 409 `package_request_shipped`: the package is on its way, and keeps its recipient.',
  },
  ship: {
    summary: 'Mark a pending package request shipped (the warehouse’s action)',
    description:
      'A pending request becomes `shipped` (200), and its recipient stays as the shipping record; one already shipped is answered 200 unchanged; a cancelled one 409 `package_request_cancelled`.',
  },
};

/** The routes that change a package request: its recipient, or its status. */
export function changeRoutes(api: HttpServer, context: RouteContext): void {
  api.patch(
    `${PATH}/:id`,
    {
      schema: {
        ...CHANGE_SCHEMA,
        summary:
          'Change the recipient of a pending package request (idempotent with Idempotency-Key)',
        description: `For a customer who changed: the new \`recipient_name\` or \`recipient_email\` (at least one), with the \`customer_version\` they come from. A newer version than the request has is applied (200, \`updated_at\` moves); the same version is a repeat, answered 200 unchanged; an older one is refused with 409 \`customer_version_stale\` naming \`current_customer_version\`, so a late update never overwrites a newer one, whatever order they arrive in. A shipped or cancelled request answers 409 \`package_request_shipped\` or \`package_request_cancelled\` with the request as \`package_request\`: a shipped package keeps the recipient it was shipped to. ${IDEMPOTENCY_DESCRIPTION}`,
        body: PackageRequestChangeSchema,
      },
    },
    async (request, reply) =>
      answerRequest(context, request, reply, {
        op: 'update',
        id: request.params.id,
        change: request.body,
      }),
  );

  for (const op of ['cancel', 'ship'] as const) {
    api.post(
      `${PATH}/:id/${op}`,
      {
        schema: {
          ...CHANGE_SCHEMA,
          summary: `${TRANSITION_DOCS[op].summary} (idempotent with Idempotency-Key)`,
          description: `${TRANSITION_DOCS[op].description} No body, or \`{}\`. ${IDEMPOTENCY_DESCRIPTION}`,
        },
      },
      async (request, reply) =>
        answerRequest(context, request, reply, { op, id: request.params.id }),
    );
  }
}
