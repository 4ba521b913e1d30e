import { newId } from '../core/ids.js';
import type { Kysely, Selectable, UpdateQueryBuilder, UpdateResult } from 'kysely';
import { toIsoString } from '../core/db.js';
import { readPage, type Page, type PageRequest } from '../core/pagination.js';
import type {
  PackageRequest,
  PackageRequestChange,
  PackageRequestStatus,
} from '../contracts/package-requests.js';
import type { InventoryTables } from './migrations.js';

type Row = Selectable<InventoryTables['package_requests']>;
type Db = Kysely<InventoryTables>;

export const COLUMNS = [
  'id',
  'customer_id',
  'kind',
  'status',
  'recipient_name',
  'recipient_email',
  'customer_version',
  'created_at',
  'updated_at',
] as const;

export function toPackageRequest(row: Pick<Row, (typeof COLUMNS)[number]>): PackageRequest {
  return {
    id: row.id,
    customer_id: row.customer_id,
    kind: row.kind,
    status: row.status,
    recipient_name: row.recipient_name,
    recipient_email: row.recipient_email,
    customer_version: row.customer_version === null ? null : Number(row.customer_version),
    created_at: toIsoString(row.created_at),
    // Null only from a process of the previous version still running during an upgrade.
    updated_at: toIsoString(row.updated_at ?? row.created_at),
  };
}

/** What a create asks for: `POST /package-requests` with its kind filled in. */
export interface CreateInput {
  customer_id: string;
  kind: string;
  recipient_name?: string | undefined;
  recipient_email?: string | undefined;
  customer_version?: number | undefined;
}

function newRequest(input: CreateInput, now: string): PackageRequest {
  return {
    id: newId(),
    customer_id: input.customer_id,
    kind: input.kind,
    status: 'pending',
    recipient_name: input.recipient_name ?? null,
    recipient_email: input.recipient_email ?? null,
    customer_version: input.customer_version ?? null,
    created_at: now,
    updated_at: now,
  };
}

/**
 * The moves between statuses, each with the statuses it may start from: only a pending request is
 * shipped or cancelled (PACKAGE_REQUEST_STATUSES says why). A cancel erases the recipient (its
 * customer left and no package goes out); a shipped request keeps it as the shipping record.
 */
export const TRANSITIONS = {
  cancel: { to: 'cancelled', from: ['pending'], erasesRecipient: true },
  ship: { to: 'shipped', from: ['pending'], erasesRecipient: false },
} as const satisfies Record<
  string,
  { to: PackageRequestStatus; from: readonly PackageRequestStatus[]; erasesRecipient: boolean }
>;
export type Transition = keyof typeof TRANSITIONS;

/**
 * How a change (an update or a transition) went: `changed`; `unchanged`, when the request already
 * is what was asked (the same customer version, or the status moved to); `closed`, when it was
 * shipped or cancelled (and the change is not a repeat of that); `stale`, when it has a newer
 * customer version; `not_found`.
 */
export type ChangeOutcome =
  | { kind: 'changed'; request: PackageRequest }
  | { kind: 'unchanged'; request: PackageRequest }
  | { kind: 'stale'; request: PackageRequest }
  | { kind: 'closed'; request: PackageRequest; status: Exclude<PackageRequestStatus, 'pending'> }
  | { kind: 'not_found' };

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

type RequestUpdate = UpdateQueryBuilder<
  InventoryTables,
  'package_requests',
  'package_requests',
  UpdateResult
>;

/**
 * Reads requests to put in an answer that may be stored under an idempotency key: locked (FOR
 * SHARE, PostgreSQL) until the answer commits, so a concurrent cancel either commits first and is
 * read, erased, or waits and then erases the stored answer too.
 */
const readForAnswer = (db: Db) => db.selectFrom('package_requests').select(COLUMNS).forShare();

/**
 * One conditional UPDATE of request `id` (`update` adds what it sets and its conditions; it moves
 * `updated_at`); when it changed no row, the request as it now stands says why (`explain`).
 */
async function changeOne(
  db: Db,
  id: string,
  update: (query: RequestUpdate) => RequestUpdate,
  explain: (request: PackageRequest) => ChangeOutcome,
): Promise<ChangeOutcome> {
  const query = db
    .updateTable('package_requests')
    .set({ updated_at: new Date().toISOString() })
    .where('id', '=', id);
  const row = await update(query).returning(COLUMNS).executeTakeFirst();
  if (row) return { kind: 'changed', request: toPackageRequest(row) };
  const request = await readForAnswer(db).where('id', '=', id).executeTakeFirst();
  return request ? explain(toPackageRequest(request)) : { kind: 'not_found' };
}

/** Reads and writes Inventory's package requests. Methods take `db` so callers can pass a transaction. */
export const packageRequests = {
  /**
   * Creates the request unless one exists for the same customer and kind; the database's unique
   * constraint decides, so concurrent creates cannot both win.
   */
  async create(db: Db, input: CreateInput): Promise<CreateOutcome> {
    const request = newRequest(input, new Date().toISOString());
    const inserted = await db
      .insertInto('package_requests')
      .values(request)
      .onConflict((conflict) => conflict.columns(['customer_id', 'kind']).doNothing())
      .returning('id')
      .executeTakeFirst();
    if (inserted) return { created: true, request };
    const existing = await readForAnswer(db)
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
  async createMany(db: Db, inputs: readonly CreateInput[]): Promise<CreateOutcome[]> {
    if (inputs.length === 0) return [];
    const createdAt = new Date().toISOString();
    const candidates = new Map<string, PackageRequest>();
    for (const input of inputs) {
      const pair = pairOf(input);
      if (!candidates.has(pair)) candidates.set(pair, newRequest(input, createdAt));
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
      // Not locked here: `runMany` locks every request a batch answers about in one order.
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

  /**
   * Applies `change` to a pending request whose customer version is older (or unknown), in one
   * UPDATE whose WHERE clause holds every condition: concurrent changes cannot slip between a read
   * and a write, so the newest customer version wins whatever order they commit in. When nothing
   * was updated, the request as it now stands says why.
   */
  update(db: Db, id: string, change: PackageRequestChange): Promise<ChangeOutcome> {
    return changeOne(
      db,
      id,
      (query) =>
        query
          .set({
            ...(change.recipient_name === undefined
              ? {}
              : { recipient_name: change.recipient_name }),
            ...(change.recipient_email === undefined
              ? {}
              : { recipient_email: change.recipient_email }),
            customer_version: change.customer_version,
          })
          .where('status', '=', 'pending')
          .where((eb) =>
            eb.or([
              eb('customer_version', 'is', null),
              eb('customer_version', '<', change.customer_version),
            ]),
          ),
      (request) => {
        if (request.status !== 'pending')
          return { kind: 'closed', request, status: request.status };
        const newer = (request.customer_version ?? 0) > change.customer_version;
        return { kind: newer ? 'stale' : 'unchanged', request };
      },
    );
  },

  /**
   * Moves a request to the transition's status, in one UPDATE that names the statuses it may
   * start from: of a concurrent cancel and ship, one wins and the other finds it moved.
   */
  transition(db: Db, id: string, transition: Transition): Promise<ChangeOutcome> {
    const { to, from, erasesRecipient } = TRANSITIONS[transition];
    const erased = erasesRecipient ? { recipient_name: null, recipient_email: null } : {};
    return changeOne(
      db,
      id,
      (query) => query.set({ status: to, ...erased }).where('status', 'in', from),
      (request) => {
        if (request.status === to) return { kind: 'unchanged', request };
        if (request.status === 'pending') {
          throw new Error(
            `Package request ${id} is pending, yet moving it to ${to} changed no row`,
          );
        }
        return { kind: 'closed', request, status: request.status };
      },
    );
  },

  /**
   * Locks requests `ids` (FOR UPDATE, PostgreSQL) in id order, the order every batch locks rows
   * in, so two batches cannot deadlock; answers them as they now stand, by id.
   */
  async lockInIdOrder(db: Db, ids: readonly string[]): Promise<Map<string, PackageRequest>> {
    if (ids.length === 0) return new Map();
    const rows = await db
      .selectFrom('package_requests')
      .select(COLUMNS)
      .where('id', 'in', [...new Set(ids)])
      .orderBy('id')
      .forUpdate()
      .execute();
    return new Map(rows.map((row) => [row.id, toPackageRequest(row)]));
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
