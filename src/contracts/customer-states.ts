/**
 * `GET /customer-states` on the CRM: every customer it knows, live or deleted, in id order. The
 * audit (integration service) walks it beside Inventory's requests in the same order, so both
 * sides are compared a page at a time whatever their size.
 */
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { Timestamp, Uuid } from '../core/schemas.js';

/** Most customers in one page of `GET /customer-states`. */
export const CUSTOMER_STATES_MAX_LIMIT = 1000;

export const CustomerStateSchema = Type.Object(
  {
    id: Uuid('Assigned by the CRM.'),
    version: Type.Integer({ minimum: 1, description: 'The customer’s latest version.' }),
    deleted_at: Type.Union([Timestamp('When the customer was deleted.'), Type.Null()], {
      description: 'When the customer was deleted; null while it lives.',
    }),
    changed_at: Timestamp('When the customer was last created, changed or deleted.'),
    name: Type.Union([Type.String(), Type.Null()], { description: 'Null once deleted.' }),
    email: Type.Union([Type.String(), Type.Null()], { description: 'Null once deleted.' }),
  },
  { additionalProperties: false },
);
export type CustomerState = Static<typeof CustomerStateSchema>;

/** An answer of `GET /customer-states/{id}`. */
export const isCustomerState = Compile(CustomerStateSchema);

/** A page of `GET /customer-states`. */
export const isCustomerStatePage = Compile(Type.Array(CustomerStateSchema));

export const CustomerStatesQuery = Type.Object(
  {
    after: Type.Optional(
      Uuid('Only customers whose id sorts after this one (the last id of the previous page).'),
    ),
    limit: Type.Integer({
      minimum: 1,
      maximum: CUSTOMER_STATES_MAX_LIMIT,
      default: 500,
      description: `Largest number of customers to return (1–${CUSTOMER_STATES_MAX_LIMIT}, default 500).`,
    }),
  },
  { additionalProperties: false },
);

/**
 * The order both sides of the audit use: ids compared byte by byte (as JavaScript compares
 * ASCII strings, and SQLite and PostgreSQL's "C" collation order text).
 */
export const compareIds = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
