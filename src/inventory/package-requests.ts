import { newId } from '../core/ids.js';
import type { Kysely, Selectable } from 'kysely';
import { toIsoString } from '../core/db.js';
import { readPage, type Page, type PageRequest } from '../core/pagination.js';
import type { PackageRequest } from '../contracts/package-requests.js';
import type { InventoryTables } from './migrations.js';

type Row = Selectable<InventoryTables['package_requests']>;
type Db = Kysely<InventoryTables>;

const COLUMNS = ['id', 'customer_id', 'kind', 'status', 'created_at'] as const;

function toPackageRequest(row: Pick<Row, (typeof COLUMNS)[number]>): PackageRequest {
  return {
    id: row.id,
    customer_id: row.customer_id,
    kind: row.kind,
    status: row.status as PackageRequest['status'],
    created_at: toIsoString(row.created_at),
  };
}

/** Identifies a customer-and-kind pair, which can have one request. */
const pairOf = (request: { customer_id: string; kind: string }) =>
  JSON.stringify([request.customer_id, request.kind]);

const byPair = (a: PackageRequest, b: PackageRequest) =>
  a.customer_id < b.customer_id
    ? -1
    : a.customer_id > b.customer_id
      ? 1
      : a.kind < b.kind
        ? -1
        : a.kind > b.kind
          ? 1
          : 0;

export type CreateOutcome =
  { created: true; request: PackageRequest } | { created: false; existing: PackageRequest };

/** Reads and writes Inventory's package requests. Methods take `db` so callers can pass a transaction. */
export const packageRequests = {
  /**
   * Creates the request unless one exists for the same customer and kind; the database's unique
   * constraint decides, so concurrent creates cannot both win.
   */
  async create(db: Db, input: { customer_id: string; kind: string }): Promise<CreateOutcome> {
    const request: PackageRequest = {
      id: newId(),
      customer_id: input.customer_id,
      kind: input.kind,
      status: 'pending',
      created_at: new Date().toISOString(),
    };
    const inserted = await db
      .insertInto('package_requests')
      .values(request)
      .onConflict((conflict) => conflict.columns(['customer_id', 'kind']).doNothing())
      .returning('id')
      .executeTakeFirst();
    if (inserted) return { created: true, request };
    const existing = await db
      .selectFrom('package_requests')
      .select(COLUMNS)
      .where('customer_id', '=', input.customer_id)
      .where('kind', '=', input.kind)
      .executeTakeFirstOrThrow();
    return { created: false, existing: toPackageRequest(existing) };
  },

  /**
   * `create` for many inputs in two statements at most, however many there are, answering in input
   * order. An input repeating an earlier one's customer and kind gets that earlier one's request as
   * `existing`, as if they had been created one after the other.
   */
  async createMany(
    db: Db,
    inputs: readonly { customer_id: string; kind: string }[],
  ): Promise<CreateOutcome[]> {
    if (inputs.length === 0) return [];
    const createdAt = new Date().toISOString();
    const candidates = new Map<string, PackageRequest>();
    for (const input of inputs) {
      const pair = pairOf(input);
      if (candidates.has(pair)) continue;
      candidates.set(pair, {
        id: newId(),
        customer_id: input.customer_id,
        kind: input.kind,
        status: 'pending',
        created_at: createdAt,
      });
    }
    // Sorted so that concurrent batches lock rows in one order: on PostgreSQL, two batches
    // inserting the same pairs in different orders could otherwise deadlock.
    const rows = [...candidates.values()].sort(byPair);
    const inserted = new Set(
      (
        await db
          .insertInto('package_requests')
          .values(rows)
          .onConflict((conflict) => conflict.columns(['customer_id', 'kind']).doNothing())
          .returning('id')
          .execute()
      ).map((row) => row.id),
    );
    const existing = new Map<string, PackageRequest>();
    const lost = rows.filter((row) => !inserted.has(row.id));
    if (lost.length > 0) {
      const found = await db
        .selectFrom('package_requests')
        .select(COLUMNS)
        .where('customer_id', 'in', [...new Set(lost.map((row) => row.customer_id))])
        .execute();
      for (const row of found) existing.set(pairOf(row), toPackageRequest(row));
    }

    const answered = new Set<string>();
    return inputs.map((input) => {
      const pair = pairOf(input);
      const request = candidates.get(pair)!;
      if (inserted.has(request.id)) {
        if (answered.has(pair)) return { created: false, existing: request };
        answered.add(pair);
        return { created: true, request };
      }
      const other = existing.get(pair);
      if (!other) throw new Error(`No package request for ${pair} after a conflict on it`);
      return { created: false, existing: other };
    });
  },

  async get(db: Db, id: string): Promise<PackageRequest | undefined> {
    const row = await db
      .selectFrom('package_requests')
      .select(COLUMNS)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toPackageRequest(row);
  },

  /** One page in creation order, optionally for one customer; undefined when `after` is unknown. */
  list(
    db: Db,
    page: PageRequest & { customer_id?: string | undefined },
  ): Promise<Page<PackageRequest> | undefined> {
    return readPage(
      page,
      async (id) =>
        (
          await db
            .selectFrom('package_requests')
            .select('seq')
            .where('id', '=', id)
            .executeTakeFirst()
        )?.seq,
      async (seq, count) => {
        let query = db
          .selectFrom('package_requests')
          .select(COLUMNS)
          .where('seq', '>', seq)
          .orderBy('seq')
          .limit(count);
        if (page.customer_id !== undefined)
          query = query.where('customer_id', '=', page.customer_id);
        return (await query.execute()).map(toPackageRequest);
      },
    );
  },
};
