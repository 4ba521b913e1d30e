/**
 * Inventory's package requests on the wire: `POST /package-requests` and its batch form, and their
 * answers. Inventory validates and documents with these schemas; the integration service and the
 * Lambda build their calls from the same types.
 */
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { ProblemSchema } from '../core/errors.js';
import { Timestamp, Uuid } from '../core/schemas.js';
import { MatchingString } from '../core/validation-messages.js';

/** Largest number of items in one `POST /package-requests/batch`. */
export const BATCH_MAX_ITEMS = 500;

export const DEFAULT_KIND = 'welcome_package';

const Kind = MatchingString(
  '^[a-z][a-z0-9_]{0,63}$',
  'must start with a lowercase letter and hold only lowercase letters, digits and underscores (at most 64), e.g. welcome_package',
  {
    description: 'What to send: lowercase letters, digits and underscores.',
    // `example`, not `examples`: OpenAPI 3.0 Schema Objects know only the singular.
    example: DEFAULT_KIND,
  },
);

export const IdempotencyKeySchema = MatchingString(
  '^[\\x21-\\x7e]+$',
  'must be printable ASCII without spaces, e.g. welcome-package:<customer id>',
  {
    minLength: 1,
    maxLength: 255,
    description: 'A unique key per intended request, e.g. `welcome-package:<customer id>`.',
  },
);

export const NewPackageRequestSchema = Type.Object(
  {
    customer_id: Uuid('The CRM id of the customer to send the package to.'),
    kind: Type.Optional({ ...Kind, default: DEFAULT_KIND }),
  },
  { additionalProperties: false },
);
export type NewPackageRequest = Static<typeof NewPackageRequestSchema>;

export const PackageRequestSchema = Type.Object(
  {
    id: Uuid('Assigned by Inventory.'),
    customer_id: Uuid('The CRM id of the customer.'),
    kind: Kind,
    status: Type.Literal('pending', { description: 'Every request starts pending.' }),
    created_at: Timestamp('When the request was created (ISO 8601, UTC).'),
  },
  { additionalProperties: false },
);
export type PackageRequest = Static<typeof PackageRequestSchema>;

export const BatchRequestSchema = Type.Object(
  {
    items: Type.Array(
      Type.Object(
        {
          ...NewPackageRequestSchema.properties,
          idempotency_key: Type.Optional(IdempotencyKeySchema),
        },
        { additionalProperties: false },
      ),
      {
        minItems: 1,
        maxItems: BATCH_MAX_ITEMS,
        description: `1–${BATCH_MAX_ITEMS} package requests, each with its own optional \`idempotency_key\`.`,
      },
    ),
  },
  { additionalProperties: false },
);
export type BatchRequest = Static<typeof BatchRequestSchema>;

export const BatchResponseSchema = Type.Object(
  {
    results: Type.Array(
      Type.Object({
        status: Type.Union([Type.Literal(201), Type.Literal(409), Type.Literal(422)], {
          description: 'What `POST /package-requests` would have answered for this item.',
        }),
        replayed: Type.Boolean({
          description:
            'True when `body` is the answer stored for the item’s key (`idempotent-replayed: true` on the single route).',
        }),
        body: Type.Union([PackageRequestSchema, ProblemSchema], {
          description: 'The package request (201), or the problem+json object (409, 422).',
        }),
      }),
      { description: 'One result per item, in the order of `items`.' },
    ),
  },
  { description: 'The batch ran; each item has its own answer.' },
);
export type BatchResponse = Static<typeof BatchResponseSchema>;

// ---------------------------------------------------------------------------------------------
// What callers read of the answers: only what decides the outcome, so a field Inventory adds
// breaks no caller.

/** A 201: the created request's id. */
export const isCreatedAnswer = Compile(Type.Object({ id: Type.String({ minLength: 1 }) }));

/** A 409 naming the request the customer already has: done all the same. */
export const isExistingRequestAnswer = Compile(
  Type.Object({
    code: Type.Literal('package_request_exists'),
    existing_request: Type.Object({ id: Type.String({ minLength: 1 }) }),
  }),
);

/** A 409 while an earlier call with the same Idempotency-Key still runs: ask again later. */
export const isInFlightAnswer = Compile(
  Type.Object({ code: Type.Literal('idempotency_key_in_flight') }),
);

/** A 200 from the batch route: per item, in order, what the single route would have answered. */
export const isBatchAnswer = Compile(
  Type.Object({
    results: Type.Array(Type.Object({ status: Type.Integer(), body: Type.Unknown() })),
  }),
);
