/**
 * Inventory's package requests on the wire: `POST /package-requests`, the changes
 * (`PATCH /package-requests/{id}`, `POST …/{id}/cancel`, `POST …/{id}/ship`), the batch form of
 * all four, and their answers. Inventory validates and documents with these schemas; the integration service and the
 * Lambda build their calls from the same types.
 */
import { Type, type Static, type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { ProblemSchema } from '../core/errors.js';
import { PlainText, Timestamp, Uuid } from '../core/schemas.js';
import { MatchingString } from '../core/validation-messages.js';

/** Largest number of items in one `POST /package-requests/batch`. */
export const BATCH_MAX_ITEMS = 500;

export const DEFAULT_KIND = 'welcome_package';

export const PackageKindSchema = MatchingString(
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

/**
 * A package request's life, the one list of its states: `pending` (waiting for the warehouse) →
 * `shipped` (sent; its recipient stays as the shipping record) or → `cancelled` (the customer left,
 * or the request was withdrawn). Neither end changes again. The TypeScript union, the schemas and
 * the database CHECK (inventory migration 2) all come from it: a new state is added here and in a
 * new migration that replaces the CHECK.
 */
export const PACKAGE_REQUEST_STATUSES = ['pending', 'shipped', 'cancelled'] as const;
export type PackageRequestStatus = (typeof PACKAGE_REQUEST_STATUSES)[number];

const StatusSchema = Type.Enum(PACKAGE_REQUEST_STATUSES, {
  description:
    '`pending` until the warehouse ships it (`shipped`) or it is cancelled (`cancelled`); neither changes again.',
});

const RecipientName = PlainText({
  maxLength: 200,
  description: 'Whom to send the package to: the customer’s name, e.g. "Jane Doe".',
});

const RecipientEmail = Type.String({
  format: 'email',
  maxLength: 254,
  description: 'The customer’s email address.',
});

const CustomerVersion = Type.Integer({
  minimum: 1,
  maximum: Number.MAX_SAFE_INTEGER,
  description:
    'The version of the CRM customer the recipient fields were read from; a change with an older version never overwrites a newer one.',
});

/** Answer codes of a change refused with 409. */
export const CUSTOMER_VERSION_STALE = 'customer_version_stale';
/** `package_request_shipped` or `package_request_cancelled`: the request no longer changes. */
export const closedRequestCode = (status: Exclude<PackageRequestStatus, 'pending'>) =>
  `package_request_${status}` as const;

export const NewPackageRequestSchema = Type.Object(
  {
    customer_id: Uuid('The CRM id of the customer to send the package to.'),
    kind: Type.Optional({ ...PackageKindSchema, default: DEFAULT_KIND }),
    recipient_name: Type.Optional(RecipientName),
    recipient_email: Type.Optional(RecipientEmail),
    customer_version: Type.Optional(CustomerVersion),
  },
  { additionalProperties: false },
);
export type NewPackageRequest = Static<typeof NewPackageRequestSchema>;

/**
 * `schema` or null, as OpenAPI 3.0 says it (`nullable`): serializing a created request's answer
 * through a union would check each such field against every branch.
 */
const Nullable = <T extends TSchema>(schema: T, description: string) =>
  Type.Unsafe<Static<T> | null>({ ...schema, nullable: true, description });

export const PackageRequestSchema = Type.Object(
  {
    id: Uuid('Assigned by Inventory.'),
    customer_id: Uuid('The CRM id of the customer.'),
    kind: PackageKindSchema,
    status: StatusSchema,
    recipient_name: Nullable(Type.String(), 'Whom to send it to; null when nobody said.'),
    recipient_email: Nullable(Type.String(), 'Their email address; null when nobody said.'),
    customer_version: Nullable(
      Type.Integer(),
      'The CRM customer version the recipient comes from; null when the creator did not say.',
    ),
    created_at: Timestamp('When the request was created (ISO 8601, UTC).'),
    updated_at: Timestamp('When it last changed: created, updated, shipped or cancelled.'),
  },
  { additionalProperties: false },
);
export type PackageRequest = Static<typeof PackageRequestSchema>;

/** Of a change: at least one recipient field besides `customer_version`. */
const A_RECIPIENT_FIELD = [{ required: ['recipient_name'] }, { required: ['recipient_email'] }];

const ChangeFields = {
  recipient_name: Type.Optional(RecipientName),
  recipient_email: Type.Optional(RecipientEmail),
  customer_version: CustomerVersion,
};

/** `PATCH /package-requests/{id}`: the customer changed. */
export const PackageRequestChangeSchema = Type.Object(ChangeFields, {
  additionalProperties: false,
  anyOf: A_RECIPIENT_FIELD,
  description:
    'The customer’s new name or email (at least one), with the CRM customer version they come from.',
});
export type PackageRequestChange = Static<typeof PackageRequestChangeSchema>;

const ItemKey = { idempotency_key: Type.Optional(IdempotencyKeySchema) };
const ItemId = Uuid('The package request to change.');

const CreateItemSchema = Type.Object(
  {
    op: Type.Optional(
      Type.Literal('create', { description: 'What to do with this item; `create` when absent.' }),
    ),
    ...NewPackageRequestSchema.properties,
    ...ItemKey,
  },
  { additionalProperties: false, description: 'As `POST /package-requests`.' },
);

const UpdateItemSchema = Type.Object(
  { op: Type.Literal('update'), id: ItemId, ...ChangeFields, ...ItemKey },
  {
    additionalProperties: false,
    anyOf: A_RECIPIENT_FIELD,
    description: 'As `PATCH /package-requests/{id}`.',
  },
);

const transitionItem = <Op extends 'cancel' | 'ship'>(op: Op) =>
  Type.Object(
    { op: Type.Literal(op), id: ItemId, ...ItemKey },
    { additionalProperties: false, description: `As \`POST /package-requests/{id}/${op}\`.` },
  );

export const BatchItemSchema = Type.Union([
  CreateItemSchema,
  UpdateItemSchema,
  transitionItem('cancel'),
  transitionItem('ship'),
]);
export type BatchItem = Static<typeof BatchItemSchema>;

export const BatchRequestSchema = Type.Object(
  {
    items: Type.Array(BatchItemSchema, {
      minItems: 1,
      maxItems: BATCH_MAX_ITEMS,
      description: `1–${BATCH_MAX_ITEMS} items, each with its own optional \`idempotency_key\`: \`op\` \`create\` (the default), \`update\`, \`cancel\` or \`ship\`.`,
    }),
  },
  { additionalProperties: false },
);
export type BatchRequest = Static<typeof BatchRequestSchema>;

export const BatchResponseSchema = Type.Object(
  {
    results: Type.Array(
      Type.Object({
        status: Type.Union(
          [
            Type.Literal(201),
            Type.Literal(200),
            Type.Literal(404),
            Type.Literal(409),
            Type.Literal(422),
          ],
          { description: 'What the item’s single route would have answered.' },
        ),
        replayed: Type.Boolean({
          description:
            'True when `body` is the answer stored for the item’s key (`idempotent-replayed: true` on the single route).',
        }),
        body: Type.Union([PackageRequestSchema, ProblemSchema], {
          description:
            'The package request (200, 201), or the problem+json object (404, 409, 422).',
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

/** A 200 to a change (update, cancel, ship): the request as it now stands. */
export const isPackageRequestAnswer = Compile(
  Type.Object({ id: Type.String({ minLength: 1 }), status: Type.String() }),
);

/** A 409 to an update older than what the request has: a newer one won, nothing to do. */
export const isStaleVersionAnswer = Compile(
  Type.Object({
    code: Type.Literal(CUSTOMER_VERSION_STALE),
    current_customer_version: Type.Integer(),
  }),
);

/** A 409 to a change of a request that was shipped or cancelled: too late, it changes no more. */
export const isClosedRequestAnswer = Compile(
  Type.Object({
    code: Type.Union([
      Type.Literal(closedRequestCode('shipped')),
      Type.Literal(closedRequestCode('cancelled')),
    ]),
  }),
);

/** What a caller reads of a package request in any answer: which one, its status, its version. */
const RequestStateSchema = Type.Object({
  id: Type.String({ minLength: 1 }),
  status: Type.Enum(PACKAGE_REQUEST_STATUSES),
  customer_version: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
});
export type RequestState = Static<typeof RequestStateSchema>;

/** A 200 or 201 about one request: the request as it now stands. */
export const isRequestStateAnswer = Compile(RequestStateSchema);

/**
 * A page of a list of package requests (`GET /package-requests`, `…/by-customer`), as a reader
 * checks it: the same fields, their nulls as JSON Schema says them (`nullable` is OpenAPI's).
 */
export const isPackageRequestPage = Compile(
  Type.Array(
    Type.Object({
      ...PackageRequestSchema.properties,
      recipient_name: Type.Union([Type.String(), Type.Null()]),
      recipient_email: Type.Union([Type.String(), Type.Null()]),
      customer_version: Type.Union([Type.Integer(), Type.Null()]),
    }),
  ),
);

/**
 * A 409 that shows the request as it stands: `package_request_exists` (as `existing_request`),
 * `customer_version_stale`, `package_request_shipped` and `package_request_cancelled` (as
 * `package_request`).
 */
export const isConflictWithRequestAnswer = Compile(
  Type.Union([
    Type.Object({
      code: Type.Literal('package_request_exists'),
      existing_request: RequestStateSchema,
    }),
    Type.Object({ code: Type.String(), package_request: RequestStateSchema }),
  ]),
);

/**
 * A 422 to a key sent before with another body: for a create, the customer's package was asked
 * for before with an older recipient, so it exists (or is being made).
 */
export const isKeyReusedAnswer = Compile(
  Type.Object({ code: Type.Literal('idempotency_key_reused') }),
);
