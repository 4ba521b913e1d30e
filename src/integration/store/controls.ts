import { sql, type Kysely } from 'kysely';
import type { Database } from '../../core/db.js';
import { ALL_CUSTOMERS, type IntegrationTables } from '../migrations.js';
import type { LeasesRepository } from './leases.js';
import type { Actor } from './read-models.js';
import { actionEntries, insertTimeline } from './timeline.js';

type Db = Kysely<IntegrationTables>;

/** The one destination deliveries go to, as its controls row names it. */
export const INVENTORY = 'inventory';

/** Whether delivery to Inventory is paused, since when and by whom. */
export interface PauseState {
  paused: boolean;
  since: number | null;
  by: string | null;
}

/**
 * True while delivery is paused, as `trx` sees it: claims read it in their own transaction, so a
 * pause that committed stops every instance's next claim.
 */
export async function isPausedIn(trx: Db): Promise<boolean> {
  const row = await trx
    .selectFrom('delivery_controls')
    .select('paused_at')
    .where('destination', '=', INVENTORY)
    .executeTakeFirst();
  return row?.paused_at != null;
}

/** The condition a claim query adds: no pause is in force. */
export const notPaused = sql<boolean>`not exists (select 1 from delivery_controls
  where destination = ${INVENTORY} and paused_at is not null)`;

/** Pausing and resuming delivery to Inventory, each noted in every customer's timeline. */
export function createControlsRepository(
  database: Database<IntegrationTables>,
  leases: Pick<LeasesRepository, 'rewindCursorIn'>,
) {
  const { db } = database;

  /**
   * Sets or lifts the pause, its row locked first (of two concurrent pauses one changes it);
   * answers false when it already was so. A resume moves the failure clocks of the deliveries
   * that were failing on by the pause's length: time paused never counts towards a dead letter.
   */
  const setPause = (by: Actor, pause: boolean, now: number) =>
    db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('delivery_controls')
        .select('paused_at')
        .where('destination', '=', INVENTORY)
        .forUpdate()
        .executeTakeFirstOrThrow();
      if ((row.paused_at !== null) === pause) return false;
      await trx
        .updateTable('delivery_controls')
        .set({ paused_at: pause ? now : null, paused_by: pause ? by.who : null, updated_at: now })
        .where('destination', '=', INVENTORY)
        .execute();
      if (row.paused_at !== null) {
        await trx
          .updateTable('deliveries')
          .set({ failing_since: sql<number>`failing_since + ${Math.max(0, now - row.paused_at)}` })
          .where('failing_since', 'is not', null)
          .execute();
      }
      await insertTimeline(
        trx,
        actionEntries([ALL_CUSTOMERS], pause ? 'pause' : 'resume', by.who, by.instance, now),
      );
      return true;
    });

  return {
    /** Stops new calls to Inventory on every instance; answers false when already paused. */
    pause: (by: Actor, now = Date.now()) => setPause(by, true, now),
    /** Lets calls to Inventory start again; answers false when it was not paused. */
    resume: (by: Actor, now = Date.now()) => setPause(by, false, now),

    /**
     * Resync: the feed cursor `source` goes back to `to`, so the feed is read again from there
     * (see `rewindCursorIn`), noted in every customer's timeline. Answers where it reads from, and
     * up to where every event is read again.
     */
    resync: (by: Actor, source: string, to: number, now = Date.now()) =>
      db.transaction().execute(async (trx) => {
        const rewound = await leases.rewindCursorIn(trx, source, to, now);
        await insertTimeline(
          trx,
          actionEntries([ALL_CUSTOMERS], 'resync', by.who, by.instance, now),
        );
        return rewound;
      }),

    async read(): Promise<PauseState> {
      const row = await db
        .selectFrom('delivery_controls')
        .select(['paused_at', 'paused_by'])
        .where('destination', '=', INVENTORY)
        .executeTakeFirst();
      const since = row?.paused_at ?? null;
      return {
        paused: since !== null,
        since,
        by: since === null ? null : (row?.paused_by ?? null),
      };
    },
  };
}

export type ControlsRepository = ReturnType<typeof createControlsRepository>;
