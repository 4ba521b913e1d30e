import type { Kysely } from 'kysely';
import type { DialectName } from '../../core/db.js';
import type { DeliveryRow, IntegrationTables } from '../migrations.js';
import { INVENTORY } from '../store/controls.js';
import { openIncident, resolveIncident } from './incidents.js';

/** Dead letters named in an alert; the rest are counted. */
const EXAMPLES = 5;

/** Dead letters are about deliveries to Inventory: one incident at a time for them all. */
const KEY = INVENTORY;

/** A delivery just moved to the dead letters, with why. */
export interface NewDeadLetter {
  row: Pick<DeliveryRow, 'customer_id'>;
  error: string;
  status?: number | undefined;
}

/**
 * Called in the transaction that moves deliveries to the dead letters: the first ones open an
 * incident (one `delivery.dead_lettered` alert, naming the first few); more while it is open are
 * only counted. The incident closes when no dead letter remains (`resolveDeadLettersIfNone`).
 */
export function reportDeadLetters(
  trx: Kysely<IntegrationTables>,
  deadLetters: NewDeadLetter[],
  now: number,
): Promise<boolean> {
  const count = deadLetters.length;
  return openIncident(
    trx,
    {
      type: 'delivery.dead_lettered',
      key: KEY,
      summary: `${count} deliver${count === 1 ? 'y' : 'ies'} to Inventory moved to the dead letters; see GET /api/dead-letters, and replay them once the cause is fixed.`,
      occurrences: count,
      details: {
        examples: deadLetters.slice(0, EXAMPLES).map(({ row, error, status }) => ({
          customer_id: row.customer_id,
          error,
          status: status ?? null,
        })),
      },
    },
    now,
  );
}

/**
 * Closes the dead-letter incident once no dead letter remains (all replayed and delivered, or
 * replayed and waiting): the incident row is locked first, so a dead letter settled meanwhile
 * either is counted here or, finding the incident closed, opens a new one.
 */
export async function resolveDeadLettersIfNone(
  db: Kysely<IntegrationTables>,
  dialect: DialectName,
  now = Date.now(),
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    let open = trx
      .selectFrom('alert_incidents')
      .select('id')
      .where('type', '=', 'delivery.dead_lettered')
      .where('key', '=', KEY)
      .where('closed_at', 'is', null);
    if (dialect === 'postgres') open = open.forUpdate();
    if (!(await open.executeTakeFirst())) return false;
    const dead = await trx
      .selectFrom('deliveries')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('state', '=', 'dead')
      .executeTakeFirstOrThrow();
    if (Number(dead.count) > 0) return false;
    return resolveIncident(
      trx,
      {
        type: 'delivery.dead_lettered',
        key: KEY,
        summary:
          'No dead letters remain: every delivery dead-lettered in this incident was replayed.',
      },
      now,
    );
  });
}
