import type { Kysely } from 'kysely';
import type { Database } from '../../core/db.js';
import type { IntegrationTables } from '../migrations.js';

type Db = Kysely<IntegrationTables>;

/** A cursor's position as `db` (the pool, or a transaction) sees it; 0 before the first move. */
async function readCursorWith(db: Db, source: string): Promise<number> {
  const row = await db
    .selectFrom('sync_cursors')
    .select('position')
    .where('source', '=', source)
    .executeTakeFirst();
  return row?.position ?? 0;
}

/** The row that holds how far a resync of `source` reads before gaps alone are read again. */
const resyncMark = (source: string) => `resync:${source}`;

/** Sets a cursor's position (creating it), in the caller's transaction `trx`. */
async function moveCursorWith(trx: Db, source: string, to: number, now: number): Promise<void> {
  await trx
    .insertInto('sync_cursors')
    .values({ source, position: to, updated_at: now })
    .onConflict((conflict) =>
      conflict.column('source').doUpdateSet({ position: to, updated_at: now }),
    )
    .execute();
}

/** A named lease and the instance that must still hold it. */
export interface HeldLease {
  name: string;
  holder: string;
}

/**
 * Leases (one instance at a time does a job, e.g. reading the feed) and the feed cursors they
 * guard. The `…In` functions run inside a caller's transaction (see `inbox.recordFromFeed`).
 */
export function createLeasesRepository(database: Database<IntegrationTables>) {
  const { db, dialect } = database;
  return {
    readCursor(source: string): Promise<number> {
      return readCursorWith(db, source);
    },

    /**
     * True while `lease.holder` holds the lease at `now`; on PostgreSQL the lease row stays locked
     * until `trx` ends, so no other instance can take the lease over meanwhile.
     */
    async holdsLeaseIn(trx: Db, lease: HeldLease, now: number): Promise<boolean> {
      let leaseQuery = trx
        .selectFrom('leases')
        .select(['holder', 'expires_at'])
        .where('name', '=', lease.name);
      // Lock the lease row so no other instance can take the lease over until we commit.
      if (dialect === 'postgres') leaseQuery = leaseQuery.forUpdate();
      const held = await leaseQuery.executeTakeFirst();
      return held !== undefined && held.holder === lease.holder && held.expires_at > now;
    },

    /** The cursor's position as `trx` sees it. */
    readCursorIn(trx: Db, source: string): Promise<number> {
      return readCursorWith(trx, source);
    },

    moveCursorIn: moveCursorWith,

    /** Takes or renews the named lease for `holder`; true while `holder` has it. */
    async acquireLease(
      name: string,
      holder: string,
      ttlMs: number,
      now = Date.now(),
    ): Promise<boolean> {
      const row = await db
        .insertInto('leases')
        .values({ name, holder, expires_at: now + ttlMs })
        .onConflict((conflict) =>
          conflict
            .column('name')
            .doUpdateSet({ holder, expires_at: now + ttlMs })
            .where((eb) =>
              eb.or([eb('leases.holder', '=', holder), eb('leases.expires_at', '<=', now)]),
            ),
        )
        .returning('holder')
        .executeTakeFirst();
      return row?.holder === holder;
    },

    /**
     * Resync: moves `source`'s cursor back to `to` (never forward), so the feed is read again from
     * there, and records the position it had as `resync:<source>`: until the cursor is back there,
     * the feed repair reads every event, not only the gaps push left. Answers both positions.
     */
    async rewindCursorIn(
      trx: Db,
      source: string,
      to: number,
      now: number,
    ): Promise<{ from: number; until: number }> {
      const current = await readCursorWith(trx, source);
      const until = Math.max(current, await readCursorWith(trx, resyncMark(source)));
      const from = Math.min(current, to);
      await moveCursorWith(trx, source, from, now);
      await moveCursorWith(trx, resyncMark(source), until, now);
      return { from, until };
    },

    /** While a resync runs, how far it goes and where the cursor is; undefined otherwise. */
    async readResync(source: string): Promise<{ until: number; cursor: number } | undefined> {
      const [until, cursor] = await Promise.all([
        readCursorWith(db, resyncMark(source)),
        readCursorWith(db, source),
      ]);
      return cursor < until ? { until, cursor } : undefined;
    },

    async releaseLease(name: string, holder: string): Promise<void> {
      await db.deleteFrom('leases').where('name', '=', name).where('holder', '=', holder).execute();
    },

    async leaseHolder(name: string, now = Date.now()): Promise<string | undefined> {
      const row = await db
        .selectFrom('leases')
        .select(['holder', 'expires_at'])
        .where('name', '=', name)
        .executeTakeFirst();
      return row && row.expires_at > now ? row.holder : undefined;
    },
  };
}

export type LeasesRepository = ReturnType<typeof createLeasesRepository>;
