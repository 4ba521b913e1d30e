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

    async moveCursorIn(trx: Db, source: string, to: number, now: number): Promise<void> {
      await trx
        .insertInto('sync_cursors')
        .values({ source, position: to, updated_at: now })
        .onConflict((conflict) =>
          conflict.column('source').doUpdateSet({ position: to, updated_at: now }),
        )
        .execute();
    },

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
