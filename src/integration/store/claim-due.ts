import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../../core/db.js';
import type { DeliveryRow, IntegrationTables } from '../migrations.js';
import { notPaused } from './controls.js';

/**
 * What a claim takes, in this order: expired claims, due retries, due new deliveries. One indexed
 * range per state (state, next_attempt_at), read in index order: an OR over the states would make
 * the database sort every due row on each claim.
 */
const DUE_RANGES = [
  { state: 'delivering', column: 'locked_until' },
  { state: 'retrying', column: 'next_attempt_at' },
  { state: 'pending', column: 'next_attempt_at' },
] as const;

/** The deliveries of `range` that are due at `now`. */
const dueIn = (
  db: Pick<Kysely<IntegrationTables>, 'selectFrom'>,
  { state, column }: (typeof DUE_RANGES)[number],
  now: number,
) =>
  db
    .selectFrom('deliveries')
    .where('state', '=', state)
    .where(column, state === 'delivering' ? '<' : '<=', now);

export interface DueClaim {
  holder: string;
  limit: number;
  lockMs: number;
  now: number;
}

/** What a claimed delivery's row is set to. */
const claimed = ({ holder, lockMs, now }: DueClaim) => ({
  state: 'delivering' as const,
  locked_by: holder,
  locked_until: now + lockMs,
  updated_at: now,
  // A claim for a create may reach Inventory and commit there with no answer recorded (a crash, a
  // dropped connection): a later deletion must then look for that package.
  create_tried: sql<number>`case when package_request_id is null
    and customer_deleted_at is null then 1 else create_tried end`,
});

/**
 * Claims up to `limit` deliveries that are due, or whose claim expired (its instance died), for
 * `holder` until `now + lockMs`: expired claims first, then due retries, then new deliveries, each
 * oldest first; nothing while delivery is paused. Answers them in that order.
 */
export async function claimDueDeliveries(
  db: Kysely<IntegrationTables>,
  dialect: DialectName,
  claim: DueClaim,
): Promise<DeliveryRow[]> {
  // Most looks find nothing (one follows every finished call): one light read says so first,
  // without a transaction (measured: on PostgreSQL, claiming without it cost more CPU and lag).
  const anyDue = await db
    .selectNoFrom((eb) =>
      eb
        .or(DUE_RANGES.map((range) => eb.exists(dueIn(eb, range, claim.now).select('seq'))))
        .as('due'),
    )
    .executeTakeFirst();
  if (!anyDue?.due) return [];
  return dialect === 'postgres' ? claimInOneStatement(db, claim) : claimInTransaction(db, claim);
}

/**
 * PostgreSQL: one statement, one round trip. Each range's rows are locked as they
 * are picked (SKIP LOCKED: several instances claim at once without ever claiming one row twice),
 * and the ranges are read in order only until `limit` rows are picked.
 */
async function claimInOneStatement(
  db: Kysely<IntegrationTables>,
  claim: DueClaim,
): Promise<DeliveryRow[]> {
  const { limit, now } = claim;
  const [first, ...rest] = DUE_RANGES.map((range, index) =>
    db
      .selectFrom(
        dueIn(db, range, now)
          .select((eb) => ['seq', eb.ref(range.column).as('due_at')])
          .where(notPaused)
          .orderBy(range.column)
          .limit(limit)
          .forUpdate()
          .skipLocked()
          .as(`due_${index}`),
      )
      .select((eb) => ['seq', 'due_at', eb.lit(index).as('range')]),
  );
  const picked = rest.reduce((union, arm) => union.unionAll(arm), first!).limit(limit);
  const rows = await db
    .updateTable('deliveries')
    .set(claimed(claim))
    .from(picked.as('due'))
    .whereRef('deliveries.seq', '=', 'due.seq')
    .returningAll('deliveries')
    .returning(['due.range', 'due.due_at'])
    .execute();
  rows.sort((a, b) => a.range - b.range || Number(a.due_at) - Number(b.due_at) || a.seq - b.seq);
  return rows.map(({ range: _, due_at: __, ...row }) => row as DeliveryRow);
}

/** SQLite: a write transaction holds the whole database; the ranges are read and claimed in one. */
async function claimInTransaction(
  db: Kysely<IntegrationTables>,
  claim: DueClaim,
): Promise<DeliveryRow[]> {
  const { limit, now } = claim;
  return db.transaction().execute(async (trx) => {
    const seqs: number[] = [];
    for (const range of DUE_RANGES) {
      if (seqs.length >= limit) break;
      const due = dueIn(trx, range, now)
        .select('seq')
        .where(notPaused)
        .orderBy(range.column)
        .limit(limit - seqs.length);
      for (const row of await due.execute()) seqs.push(row.seq);
    }
    if (seqs.length === 0) return [];
    const rows = await trx
      .updateTable('deliveries')
      .set(claimed(claim))
      .where('seq', 'in', seqs)
      .returningAll()
      .execute();
    const order = new Map(seqs.map((seq, index) => [seq, index]));
    return rows.sort((a, b) => order.get(a.seq)! - order.get(b.seq)!);
  });
}
