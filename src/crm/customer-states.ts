import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { sql, type Kysely } from 'kysely';
import { Type } from 'typebox';
import { toIsoString, type DialectName } from '../core/db.js';
import { notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { Uuid } from '../core/schemas.js';
import {
  CustomerStateSchema,
  CustomerStatesQuery,
  type CustomerState,
} from '../contracts/customer-states.js';
import type { CrmTables } from './migrations.js';

interface StateRow {
  id: string;
  version: number;
  deleted_at: string | Date | null;
  changed_at: string | Date;
  name: string | null;
  email: string | null;
}

const toState = (row: StateRow): CustomerState => ({
  id: row.id,
  version: Number(row.version),
  deleted_at: row.deleted_at === null ? null : toIsoString(row.deleted_at),
  changed_at: toIsoString(row.changed_at),
  name: row.name,
  email: row.email,
});

/**
 * Every customer the CRM knows (live ones and the tombstones of deleted ones) in byte order of
 * their ids, for an audit that walks another system's records in the same order.
 */
export class CustomerStates {
  /** PostgreSQL orders text by the database's collation unless told: "C" is byte order. */
  private readonly byBytes;
  /** A null the union can match with the tombstones' timestamps (PostgreSQL types it). */
  private readonly noTime;

  constructor(
    private readonly db: Kysely<CrmTables>,
    dialect: DialectName,
  ) {
    this.byBytes = dialect === 'postgres' ? sql` collate "C"` : sql``;
    this.noTime = dialect === 'postgres' ? sql`cast(null as timestamptz)` : sql`null`;
  }

  /** Up to `limit` customers whose id sorts after `after` (from the first when absent). */
  async page(after: string | undefined, limit: number): Promise<CustomerState[]> {
    const from = after ?? '';
    const id = (table: string) => sql`${sql.ref(`${table}.id`)}${this.byBytes}`;
    // Each side reads at most `limit` rows along its id index; the merge keeps the first `limit`.
    const { rows } = await sql<StateRow>`
      select * from (
        select * from (
          select id, version, ${this.noTime} as deleted_at, coalesce(updated_at, created_at) as changed_at,
            name, email from customers
          where ${id('customers')} > ${from} order by ${id('customers')} limit ${limit}
        ) as live
        union all
        select * from (
          select id, version, deleted_at, deleted_at as changed_at, null as name, null as email
          from customer_tombstones
          where ${id('customer_tombstones')} > ${from} order by ${id('customer_tombstones')} limit ${limit}
        ) as deleted
      ) as states
      order by id${this.byBytes}
      limit ${limit}`.execute(this.db);
    return rows.map(toState);
  }

  /** How many customers the CRM knows, live or deleted. */
  async count(): Promise<number> {
    const count = (table: 'customers' | 'customer_tombstones') =>
      this.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<number>().as('count'))
        .executeTakeFirstOrThrow()
        .then((row) => Number(row.count));
    return (await count('customers')) + (await count('customer_tombstones'));
  }

  /** One customer, live or deleted; undefined when the CRM never had it. */
  async get(id: string): Promise<CustomerState | undefined> {
    const live = await this.db
      .selectFrom('customers')
      .select(['id', 'version', 'name', 'email', 'created_at', 'updated_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (live) {
      const { created_at, updated_at, ...rest } = live;
      return toState({ ...rest, deleted_at: null, changed_at: updated_at ?? created_at });
    }
    const deleted = await this.db
      .selectFrom('customer_tombstones')
      .select(['id', 'version', 'deleted_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    return (
      deleted && toState({ ...deleted, changed_at: deleted.deleted_at, name: null, email: null })
    );
  }
}

export const customerStateRoutes: FastifyPluginAsync<{ states: CustomerStates }> = async (
  app,
  { states },
) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/customer-states',
    {
      schema: {
        tags: ['customers'],
        summary: 'Every customer, live or deleted, in id order (for audits)',
        description:
          'Each customer the CRM knows once: live ones with their name and email, deleted ones with `deleted_at` and nothing personal. Ordered by id, byte by byte; pass the last id of a page as `after` for the next. An empty page is the end. The first page says in `X-Total-Count` how many there are.',
        querystring: CustomerStatesQuery,
        response: {
          200: Type.Array(CustomerStateSchema, {
            headers: {
              'x-total-count': {
                type: 'integer',
                description: 'On the first page (no `after`): how many customers there are.',
              },
            },
          }),
        },
      },
    },
    async (request, reply) => {
      const { after, limit } = request.query;
      if (after === undefined) reply.header('x-total-count', await states.count());
      return states.page(after, limit);
    },
  );

  api.get(
    '/customer-states/:id',
    {
      schema: {
        tags: ['customers'],
        summary: 'One customer’s state, live or deleted',
        params: Type.Object({ id: Uuid('The customer id.') }),
        response: { 200: CustomerStateSchema, ...problemResponses(404) },
      },
    },
    async (request) => {
      const state = await states.get(request.params.id.toLowerCase());
      if (!state) throw notFound(`The CRM has never had a customer with id ${request.params.id}.`);
      return state;
    },
  );
};
