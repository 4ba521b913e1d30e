import type { Kysely, Selectable, UpdateObject } from 'kysely';
import type { DialectName } from './db.js';

/** The columns an outbox table is claimed by: each row `pending` until sent, due at a time. */
interface OutboxColumns {
  seq: number;
  state: string;
  next_attempt_at: number;
  locked_until: number | null;
  locked_by?: string | null;
}

type OutboxDb = Kysely<Record<string, OutboxColumns>>;

export interface OutboxClaim {
  /** Most rows to claim. */
  limit: number;
  /** Until when the claim holds, in ms since the epoch: a crashed sender's rows are free after it. */
  lockedUntil: number;
  /** Who claims, when the table records it (every settle then names its holder). Default none. */
  holder?: string;
  now?: number;
}

/**
 * Claims an outbox's due rows (`pending`, due, not claimed or their claim lapsed), oldest due
 * first, in one statement: the CRM's webhook messages and the integration service's alerts. On
 * PostgreSQL, SKIP LOCKED lets several senders claim at once without ever claiming one row twice.
 * On SQLite a read comes first: most looks find nothing (one follows every finished batch), and a
 * read that says so costs a fraction of an update that takes the database's write lock to change
 * nothing. On PostgreSQL the update finding nothing is one round trip too, and the read would add a
 * round trip to every look that finds something.
 */
export async function claimDueOutboxRows<Tables, Table extends keyof Tables & string>(
  db: Kysely<Tables>,
  dialect: DialectName,
  table: Table,
  { limit, lockedUntil, holder, now = Date.now() }: OutboxClaim,
): Promise<Selectable<Tables[Table]>[]> {
  const outbox = db as unknown as OutboxDb;
  const name: string = table;
  const claim: UpdateObject<Record<string, OutboxColumns>, string> = {
    locked_until: lockedUntil,
    ...(holder === undefined ? {} : { locked_by: holder }),
  };
  const dueRows = () =>
    outbox
      .selectFrom(name)
      .select('seq')
      .where('state', '=', 'pending')
      .where('next_attempt_at', '<=', now)
      .where((w) => w.or([w('locked_until', 'is', null), w('locked_until', '<', now)]));
  if (dialect === 'sqlite') {
    const anyDue = await outbox
      .selectNoFrom((eb) => eb.exists(dueRows()).as('due'))
      .executeTakeFirst();
    if (!anyDue?.due) return [];
  }
  const rows = await outbox
    .updateTable(name)
    .set(claim)
    .where('seq', 'in', () => {
      let due = dueRows().orderBy('next_attempt_at').orderBy('seq').limit(limit);
      if (dialect === 'postgres') due = due.forUpdate().skipLocked();
      return due;
    })
    .returningAll()
    .execute();
  return rows as unknown as Selectable<Tables[Table]>[];
}
