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

/** A customer as the CRM answers it, and as the `data` of its `customer.created` event. */
export const CustomerSchema = Type.Object(
  {
    id: Uuid('Assigned by the CRM.'),
    name: Type.String(),
    email: Type.String(),
    created_at: Timestamp('When the customer was created (ISO 8601, UTC).'),
  },
  { additionalProperties: false },
);
export type Customer = Static<typeof CustomerSchema>;
