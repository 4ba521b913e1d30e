import { Type, type Static } from 'typebox';
import { PlainText, Timestamp, Uuid } from '../core/schemas.js';

/** `POST /customers` on the CRM: a new customer. */
export const NewCustomerSchema = Type.Object(
  {
    name: PlainText({ maxLength: 200, description: 'Full name, e.g. "Jane Doe".' }),
    email: Type.String({
      format: 'email',
      maxLength: 254,
      description: 'Unique among customers, compared case-insensitively.',
    }),
  },
  { additionalProperties: false },
);
export type NewCustomer = Static<typeof NewCustomerSchema>;

/** The fields of a customer a `PATCH /customers/{id}` may change, in the order events list them. */
export const CHANGEABLE_CUSTOMER_FIELDS = ['name', 'email'] as const;
export type ChangeableCustomerField = (typeof CHANGEABLE_CUSTOMER_FIELDS)[number];

/** `PATCH /customers/{id}` on the CRM: the fields to change, at least one. */
export const CustomerChangeSchema = Type.Object(
  {
    name: Type.Optional(NewCustomerSchema.properties.name),
    email: Type.Optional(NewCustomerSchema.properties.email),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description:
      'Only `name` and `email` change; the CRM sets `id`, `version` and the timestamps itself.',
  },
);
export type CustomerChange = Static<typeof CustomerChangeSchema>;

/** A customer as the CRM answers it, and as the `data` of its events. */
export const CustomerSchema = Type.Object(
  {
    id: Uuid('Assigned by the CRM.'),
    name: Type.String(),
    email: Type.String(),
    version: Type.Integer({
      minimum: 1,
      description:
        '1 when created, one more on every change; also the `ETag` of the customer’s answers (`If-Match` on a change).',
    }),
    created_at: Timestamp('When the customer was created (ISO 8601, UTC).'),
    updated_at: Timestamp('When the customer last changed; its creation time until then.'),
  },
  { additionalProperties: false },
);
export type Customer = Static<typeof CustomerSchema>;
