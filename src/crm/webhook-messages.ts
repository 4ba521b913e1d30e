import type { Kysely, Selectable, Transaction } from 'kysely';
import { isoOrNull } from '../core/iso.js';
import { readPage, type Page, type PageRequest } from '../core/pagination.js';
import type { WebhookMessage } from '../contracts/webhook-endpoints.js';
import type { CrmTables } from './migrations.js';

type MessageRow = Selectable<CrmTables['webhook_messages']>;
type MessageState = MessageRow['state'];

/** The states a replay sends again: given up on, or called off with the endpoint. */
export const REPLAYABLE_STATES = ['failed', 'cancelled'] as const;
export type ReplayableState = (typeof REPLAYABLE_STATES)[number];

function toMessage(row: MessageRow): WebhookMessage {
  return {
    event_id: row.event_id,
    event_position: row.event_position,
    state: row.state,
    attempts: row.attempts,
    last_status: row.last_status,
    last_error: row.last_error,
    next_attempt_at: row.state === 'pending' ? isoOrNull(row.next_attempt_at) : null,
    updated_at: isoOrNull(row.updated_at)!,
  };
}

/**
 * Each endpoint's webhook messages as an operator sees them: listed by state, replayed when given
 * up on or cancelled, and caught up when a disabled endpoint comes back. Callers check that the
 * endpoint exists.
 */
export class WebhookMessages {
  constructor(private readonly db: Kysely<CrmTables>) {}

  /** The endpoint's messages in feed order, optionally in one state. */
  async list(
    endpointId: string,
    page: PageRequest & { state?: MessageState | undefined },
  ): Promise<Page<WebhookMessage> | undefined> {
    const found = await readPage(
      page,
      async (eventId) =>
        (
          await this.db
            .selectFrom('webhook_messages')
            .select('seq')
            .where('endpoint_id', '=', endpointId)
            .where('event_id', '=', eventId)
            .executeTakeFirst()
        )?.seq,
      (afterSeq, count) => {
        let query = this.db
          .selectFrom('webhook_messages')
          .selectAll()
          .where('endpoint_id', '=', endpointId)
          .where('seq', '>', afterSeq);
        if (page.state) query = query.where('state', '=', page.state);
        return query.orderBy('seq').limit(count).execute();
      },
    );
    return found && { items: found.items.map(toMessage), hasMore: found.hasMore };
  }

  /** Sends the endpoint's failed and cancelled messages (or those in `state`) again, from scratch. */
  async replay(endpointId: string, state?: ReplayableState): Promise<number> {
    return this.requeue(this.db, endpointId, state ? [state] : [...REPLAYABLE_STATES]);
  }

  /**
   * Catches a re-enabled endpoint up from where it stopped: its cancelled messages and the one
   * its 410 Gone failed are sent again, and the events recorded while it was disabled (which got
   * no message) get one.
   */
  async catchUp(
    trx: Transaction<CrmTables>,
    endpoint: { id: string; created_at: number },
  ): Promise<number> {
    // The 410 that disabled it is where it stopped; messages given up on before are replayed.
    const requeued =
      (await this.requeue(trx, endpoint.id, ['cancelled'])) +
      (await this.requeue(trx, endpoint.id, ['failed'], 410));
    const last = await trx
      .selectFrom('webhook_messages')
      .select((eb) => eb.fn.max('event_position').as('position'))
      .where('endpoint_id', '=', endpoint.id)
      .executeTakeFirst();
    const now = Date.now();
    let missed = trx
      .selectFrom('events')
      .select((eb) => [
        eb.val(endpoint.id).as('endpoint_id'),
        'id as event_id',
        'position as event_position',
        eb.val('pending').as('state'),
        eb.val(now).as('next_attempt_at'),
        eb.val(now).as('updated_at'),
      ]);
    // Without any message yet, the endpoint has missed what was recorded since it was created.
    missed =
      last?.position != null
        ? missed.where('position', '>', Number(last.position))
        : missed.where('occurred_at', '>=', new Date(endpoint.created_at).toISOString());
    const inserted = await trx
      .insertInto('webhook_messages')
      .columns([
        'endpoint_id',
        'event_id',
        'event_position',
        'state',
        'next_attempt_at',
        'updated_at',
      ])
      .expression(missed)
      .onConflict((conflict) => conflict.columns(['endpoint_id', 'event_id']).doNothing())
      .executeTakeFirst();
    return requeued + Number(inserted.numInsertedOrUpdatedRows ?? 0);
  }

  /** Sets the endpoint's messages in `states` (with `lastStatus`, when given) to go again. */
  private async requeue(
    db: Kysely<CrmTables>,
    endpointId: string,
    states: MessageState[],
    lastStatus?: number,
  ): Promise<number> {
    const now = Date.now();
    let update = db
      .updateTable('webhook_messages')
      .set({
        state: 'pending',
        attempts: 0,
        next_attempt_at: now,
        locked_until: null,
        last_error: null,
        last_status: null,
        updated_at: now,
      })
      .where('endpoint_id', '=', endpointId)
      .where('state', 'in', states);
    if (lastStatus !== undefined) update = update.where('last_status', '=', lastStatus);
    const result = await update.executeTakeFirst();
    return Number(result.numUpdatedRows);
  }
}
