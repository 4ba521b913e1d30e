import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { sql, type Kysely } from 'kysely';
import { Type } from 'typebox';
import type { DialectName } from '../core/db.js';
import { Uuid } from '../core/schemas.js';
import {
  PackageKindSchema,
  PackageRequestSchema,
  type PackageRequest,
} from '../contracts/package-requests.js';
import type { InventoryTables } from './migrations.js';
import { PATH } from './operations.js';
import { COLUMNS, toPackageRequest } from './package-requests.js';

/** Most customers whose requests one page of `GET /package-requests/by-customer` holds. */
export const BY_CUSTOMER_MAX_LIMIT = 1000;

/**
 * Every request of the next `limit` customers (by id, byte by byte) after `after`, in customer
 * order and then creation order: a customer's requests are never split across two pages.
 */
export async function requestsByCustomer(
  db: Kysely<InventoryTables>,
  dialect: DialectName,
  page: { after?: string | undefined; limit: number; kind?: string | undefined },
): Promise<PackageRequest[]> {
  const byBytes = dialect === 'postgres' ? sql` collate "C"` : sql``;
  const ofKind = page.kind === undefined ? sql`` : sql` and kind = ${page.kind}`;
  const customers = sql`
    select customer_id${byBytes} as customer_id from package_requests
    where customer_id${byBytes} > ${page.after ?? ''}${ofKind}
    group by 1 order by 1 limit ${page.limit}`;
  let query = db
    .selectFrom('package_requests')
    .select(COLUMNS)
    .where(sql<boolean>`customer_id in (${customers})`)
    .orderBy(sql`customer_id${byBytes}`)
    .orderBy('seq');
  if (page.kind !== undefined) query = query.where('kind', '=', page.kind);
  return (await query.execute()).map(toPackageRequest);
}

export const requestsByCustomerRoute: FastifyPluginAsync<{
  db: Kysely<InventoryTables>;
  dialect: DialectName;
}> = async (app, { db, dialect }) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    `${PATH}/by-customer`,
    {
      schema: {
        tags: ['package requests'],
        summary: 'Package requests grouped by customer, in customer id order (for audits)',
        description:
          'All the requests of the next `limit` customers whose id sorts (byte by byte) after `after`; a customer’s requests are never split across pages. Pass the last `customer_id` of a page as `after` for the next; an empty page is the end.',
        querystring: Type.Object(
          {
            after: Type.Optional(Uuid('Only customers whose id sorts after this one.')),
            limit: Type.Integer({
              minimum: 1,
              maximum: BY_CUSTOMER_MAX_LIMIT,
              default: 500,
              description: `Largest number of customers whose requests to return (1–${BY_CUSTOMER_MAX_LIMIT}, default 500).`,
            }),
            kind: Type.Optional(PackageKindSchema),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(PackageRequestSchema) },
      },
    },
    async (request) => requestsByCustomer(db, dialect, request.query),
  );
};
