/**
 * The audit on the integration's admin API (`POST /api/audits`, `GET /api/audits/{id}`): the CRM
 * and Inventory compared customer by customer, what disagrees (drift) counted with examples.
 */
import { Type, type Static } from 'typebox';
import { Uuid } from '../core/schemas.js';

/**
 * What can disagree between the CRM and Inventory, the one list of drift kinds:
 * - `missing_package`: a live customer with no pending or shipped welcome package;
 * - `duplicate_packages`: a customer with more than one (pending or shipped);
 * - `stale_recipient`: a pending package whose recipient is an older version of the customer;
 * - `pending_after_deletion`: a pending package of a customer the CRM deleted;
 * - `unknown_customer`: a package of a customer the CRM never had.
 */
export const DRIFT_KINDS = [
  'missing_package',
  'duplicate_packages',
  'stale_recipient',
  'pending_after_deletion',
  'unknown_customer',
] as const;
export type DriftKind = (typeof DRIFT_KINDS)[number];

/** The kinds a repair sends through the pipeline again; the others need a person. */
export const REPAIRABLE_DRIFT_KINDS: readonly DriftKind[] = [
  'missing_package',
  'stale_recipient',
  'pending_after_deletion',
];

/** Most examples an audit keeps of each kind. */
export const AUDIT_EXAMPLES_PER_KIND = 100;

export const AUDIT_STATES = ['running', 'finished', 'failed', 'abandoned'] as const;
export type AuditState = (typeof AUDIT_STATES)[number];

const DriftExampleSchema = Type.Object({
  customer_id: Uuid('The CRM customer id.'),
  detail: Type.String({ description: 'What disagrees, in words.' }),
  package_request_ids: Type.Array(Type.String(), {
    description: 'Inventory’s requests of the customer, oldest first.',
  }),
});
export type DriftExample = Static<typeof DriftExampleSchema>;

const PerKind = <T extends Parameters<typeof Type.Object>[0][string]>(schema: T) =>
  Type.Object(
    Object.fromEntries(DRIFT_KINDS.map((kind) => [kind, schema])) as Record<DriftKind, T>,
  );

export const AuditSchema = Type.Object({
  id: Uuid('The audit’s id.'),
  state: Type.Enum(AUDIT_STATES, {
    description:
      '`running`, then `finished` or `failed`; `abandoned` when the instance running it stopped without finishing (start another).',
  }),
  repair: Type.Boolean({ description: 'Whether drifted customers are sent through the pipeline.' }),
  started_at: Type.String({ format: 'date-time' }),
  finished_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  instance: Type.String({ description: 'The instance running it.' }),
  progress: Type.Number({
    minimum: 0,
    maximum: 1,
    description: 'How far it is (0–1): customers checked of those the CRM had when it started.',
  }),
  customers_total: Type.Integer({
    description: 'How many customers the CRM had (live or deleted) when the audit started.',
  }),
  customers_checked: Type.Integer({ description: 'Customers compared so far.' }),
  requests_checked: Type.Integer({ description: 'Inventory package requests compared so far.' }),
  in_flight: Type.Integer({
    description:
      'Customers that disagree while a delivery for them is still under way (not counted as drift).',
  }),
  drift: PerKind(Type.Integer({ minimum: 0 })),
  drift_total: Type.Integer({ description: 'Customers with drift, all kinds together.' }),
  examples: PerKind(
    Type.Array(DriftExampleSchema, { description: `At most ${AUDIT_EXAMPLES_PER_KIND}.` }),
  ),
  repaired: Type.Integer({ description: 'Drifted customers sent through the pipeline again.' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'Why it failed.' }),
});
export type Audit = Static<typeof AuditSchema>;

/** `POST /api/audits`. */
export const NewAuditSchema = Type.Object(
  {
    repair: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          'Send each drifted customer the pipeline can fix (missing, stale, pending after deletion) through it again.',
      }),
    ),
  },
  { additionalProperties: false },
);

/** `POST /api/customers/{id}/resync`: the customer sent through the pipeline again. */
export const CustomerResyncSchema = Type.Object({
  customer_id: Uuid('The CRM customer id.'),
  version: Type.Integer({ description: 'The customer version the CRM has now.' }),
  deleted: Type.Boolean({ description: 'Whether the CRM deleted the customer.' }),
  package_request_id: Type.Union([Type.String(), Type.Null()], {
    description:
      'The request Inventory holds for it, to be updated or cancelled; null: one is made.',
  }),
  sent: Type.Boolean({
    description:
      'False when an instance is delivering the customer right now: that delivery is left to finish, and a resync after it is sent.',
  }),
});
export type CustomerResync = Static<typeof CustomerResyncSchema>;
