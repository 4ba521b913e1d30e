import { newId } from '../core/ids.js';
import { EventEmitter, once } from 'node:events';
import { sql, type Kysely, type Transaction } from 'kysely';
import { retryDelayMs } from '../core/backoff.js';
import { GroupCommit } from '../core/group-commit.js';
import { notifyChannel, type DialectName } from '../core/db.js';
import { APPEND_LOCK, EVENT_COLUMNS, selectFeedPage, toEvent } from './feed-order.js';
import type { WebhookHandOff, WebhookMessageRow } from './webhook-hand-off.js';
import type { ChangeableCustomerField, Customer } from '../contracts/customers.js';
import type {
  CUSTOMER_CREATED,
  CUSTOMER_DELETED,
  CUSTOMER_UPDATED,
  CustomerEvent,
  DeletedCustomer,
} from '../contracts/customer-events.js';
import type { CrmTables } from './migrations.js';

/** What an append records; the log assigns its id and position. */
export type NewEvent = (
  | {
      type: typeof CUSTOMER_CREATED | typeof CUSTOMER_UPDATED;
      /** The customer's state after the event. */
      data: Customer;
      /** customer.updated: the fields that changed. */
      changedFields?: readonly ChangeableCustomerField[];
    }
  | { type: typeof CUSTOMER_DELETED; data: DeletedCustomer; changedFields?: undefined }
) & {
  /** When it happened, ISO 8601. */
  occurredAt: string;
  /** W3C trace context of the request that caused it, passed on to consumers; default none. */
  traceparent?: string | undefined;
};

/**
 * Most appends one transaction takes (group commit). Appends made while a transaction commits
 * wait and share the next one: one append transaction per process at a time keeps pooled
 * connections free for reads, readiness and the webhook sender, and commits customers in the
 * order of their `seq`, the order `GET /customers` pages in.
 */
const MAX_BATCH = 256;

/** The PostgreSQL notification channel each committed batch of events is announced on. */
export const EVENTS_CHANNEL = 'crm_events';
/** Re-reads of a waiting long-poll, in ms: for commits of other processes nothing announces. */
const RECHECK_MS = 250;
/** The same while commits of other processes are announced (`wakeOnNotifications`). */
const NOTIFIED_RECHECK_MS = 5_000;

/**
 * Writes the changes described by a batch of appends, in their transaction; answers, in order,
 * whether each was written (the events of the others are removed, as if never appended). Pass the
 * same function for every append of a kind, so that concurrent appends share one transaction.
 */
export type BatchWrites<C> = (
  trx: Transaction<CrmTables>,
  changes: readonly C[],
) => Promise<readonly boolean[]>;

interface QueuedAppend {
  event: NewEvent;
  change: unknown;
  writes: BatchWrites<unknown>;
}

/**
 * One webhook message per active endpoint for the statement's `event` (id, position), committed
 * with the event: none is lost to a crash. With `lockedUntil` they are written claimed for the
 * sender (see `WebhookHandOff`) and returned.
 */
function insertWebhookMessages(now: number, lockedUntil: number | undefined) {
  return sql`
    insert into webhook_messages
      (endpoint_id, event_id, event_position, state, next_attempt_at, updated_at, locked_until)
    select endpoint.id, event.id, event.position, 'pending', ${now}, ${now}, ${lockedUntil ?? null}
    from webhook_endpoints as endpoint, event
    where endpoint.disabled_at is null
    ${lockedUntil === undefined ? sql`` : sql`returning *`}`;
}

/** What an append transaction queued for the webhook sender. */
interface QueuedMessages {
  /** Messages written pending, for the sender's claims. */
  pending: number;
  /** Messages written claimed for the sender (`WebhookHandOff`), with the events they carry. */
  claimed: WebhookMessageRow[];
  events: Map<string, CustomerEvent>;
}

/** The indexes of the appends in `batch`, by the function that writes their change. */
function groupByWrites(batch: readonly QueuedAppend[]): Map<BatchWrites<unknown>, number[]> {
  const groups = new Map<BatchWrites<unknown>, number[]>();
  batch.forEach((queued, i) => {
    const group = groups.get(queued.writes);
    if (group) group.push(i);
    else groups.set(queued.writes, [i]);
  });
  return groups;
}

/**
 * The CRM's outbox of events: each is appended in the same transaction as the change it
 * describes, with one webhook message per active endpoint, and readers are told after the commit.
 */
export class EventLog {
  private readonly appended = new EventEmitter();
  private closed = false;
  /** Appends made together share one transaction. */
  private readonly appends: GroupCommit<QueuedAppend, boolean>;
  /** Reads in a row that found committed events still waiting for an earlier writer. */
  private waitingReads = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  /** This process's signature on its notifications, so it does not wake itself twice. */
  private readonly notifier = newId();
  private recheckMs = RECHECK_MS;
  private handOff: WebhookHandOff | undefined;

  constructor(
    private readonly db: Kysely<CrmTables>,
    private readonly dialect: DialectName,
  ) {
    this.appended.setMaxListeners(0);
    this.appends = new GroupCommit({
      dialect,
      maxBatch: MAX_BATCH,
      commit: async (batch) => {
        const { written, messages } = await this.writeBatch(batch);
        return {
          results: written,
          afterSettled: () => {
            if (!written.includes(true)) return;
            if (messages.claimed.length > 0)
              this.handOff?.committed(messages.claimed, messages.events);
            this.appended.emit('committed', { webhookMessages: messages.pending > 0 });
          },
        };
      },
    });
  }

  /**
   * Appends `event` and has `writes` write `change` (what the event describes) in the same
   * transaction, commits, and only then wakes readers. Appends made meanwhile wait and then share
   * one transaction. Answers whether `writes` wrote the change (else the event was removed); throws
   * what this append alone would have thrown, and then nothing was recorded.
   */
  async append<C>(event: NewEvent, change: C, writes: BatchWrites<C>): Promise<boolean> {
    return this.appends.submit({ event, change, writes: writes as BatchWrites<unknown> });
  }

  /**
   * Gives the webhook messages of later appends to `handOff` as they commit, when it takes them
   * (see `WebhookHandOff`); the others are written pending for the sender's claims.
   */
  handOffWebhookMessages(handOff: WebhookHandOff): void {
    this.handOff = handOff;
  }

  /**
   * One transaction: the events first, then each kind of change, minus the events not written.
   * Answers which changes were written, and the webhook messages the written events queued.
   */
  private writeBatch(
    batch: readonly QueuedAppend[],
  ): Promise<{ written: boolean[]; messages: QueuedMessages }> {
    return this.db.connection().execute(async (connection) => {
      let drawing = false;
      try {
        return await connection.transaction().execute(async (trx) => {
          drawing = true;
          const { ids: eventIds, messages } = await this.insertEvents(
            trx,
            batch.map((queued) => queued.event),
          );
          drawing = false;
          const written = batch.map(() => false);
          for (const [writes, indexes] of groupByWrites(batch)) {
            const answers = await writes(
              trx,
              indexes.map((i) => batch[i]!.change),
            );
            indexes.forEach((i, j) => (written[i] = answers[j] === true));
          }
          const unwritten = eventIds.filter((_, i) => !written[i]);
          if (unwritten.length > 0) {
            await this.deleteEvents(trx, unwritten);
            const removed = new Set(unwritten);
            messages.claimed = messages.claimed.filter((row) => !removed.has(row.event_id));
          }
          // Delivered on commit, to every CRM process listening (see wakeOnNotifications).
          if (this.dialect === 'postgres' && unwritten.length < eventIds.length) {
            await sql`select pg_notify(${notifyChannel(EVENTS_CHANNEL)}, ${this.notifier})`.execute(
              trx,
            );
          }
          return { written, messages };
        });
      } catch (error) {
        if (drawing) await this.releaseAppendLock(connection);
        throw error;
      }
    });
  }

  /**
   * Inserts the events, in order and as their transaction's first write, and their webhook
   * messages; answers the events' ids and the messages queued.
   */
  private async insertEvents(
    trx: Transaction<CrmTables>,
    events: readonly NewEvent[],
  ): Promise<{ ids: string[]; messages: QueuedMessages }> {
    const rows = events.map((event) => ({
      id: newId(),
      type: event.type,
      customer_id: event.data.id,
      payload: JSON.stringify(event.data),
      changed_fields: event.changedFields ? JSON.stringify(event.changedFields) : null,
      occurred_at: event.occurredAt,
      traceparent: event.traceparent ?? null,
    }));
    const ids = rows.map((row) => row.id);
    const now = Date.now();
    const lockedUntil = this.handOff?.claimUntil(
      now,
      rows.map((row) => row.customer_id),
    );
    let inserted: { rows: unknown[]; numAffectedRows?: bigint };
    if (this.dialect === 'sqlite') {
      await trx.insertInto('events').values(rows).execute();
      inserted =
        await sql`with event as (select id, position from events where id in (${sql.join(ids)}))
        ${insertWebhookMessages(now, lockedUntil)}`.execute(trx);
    } else {
      // One statement, one round trip. The positions (sequence, in the order of `values`) and
      // `xid` (column default) are drawn under the lock, which the last row releases once it is
      // written; see "Feed order". Typed `values` cost PostgreSQL less than `unnest` of arrays.
      const values = rows.map(
        (row) =>
          sql`(${row.id}::text, ${row.type}::text, ${row.customer_id}::text, ${row.payload}::text,
          ${row.changed_fields}::text, ${row.occurred_at}::timestamptz, ${row.traceparent}::text)`,
      );
      inserted = await sql`
      with locked as materialized (select pg_advisory_lock(${APPEND_LOCK})),
      event as (
        insert into events (id, type, customer_id, payload, changed_fields, occurred_at, traceparent)
        select v.id, v.type, v.customer_id, v.payload, v.changed_fields, v.occurred_at, v.traceparent
        from locked, (values ${sql.join(values)})
          as v (id, type, customer_id, payload, changed_fields, occurred_at, traceparent)
        returning id, position,
          case when id = ${ids.at(-1)} then pg_advisory_unlock(${APPEND_LOCK}) end
      )
      ${insertWebhookMessages(now, lockedUntil)}`.execute(trx);
    }
    if (lockedUntil === undefined) {
      const pending = Number(inserted.numAffectedRows ?? 1n);
      return { ids, messages: { pending, claimed: [], events: new Map() } };
    }
    // The events as the feed would serve them, so a message sent at once carries what one sent
    // after a claim (which reads its event back) would.
    const claimed = inserted.rows as WebhookMessageRow[];
    const positions = new Map(claimed.map((message) => [message.event_id, message.event_position]));
    const sent = new Map<string, CustomerEvent>();
    for (const row of rows) {
      const position = positions.get(row.id);
      if (position !== undefined) sent.set(row.id, toEvent({ ...row, position }));
    }
    return { ids, messages: { pending: 0, claimed, events: sent } };
  }

  /** Removes events whose change was not written, with their webhook messages. */
  private async deleteEvents(trx: Transaction<CrmTables>, ids: readonly string[]): Promise<void> {
    await trx.deleteFrom('webhook_messages').where('event_id', 'in', ids).execute();
    await trx.deleteFrom('events').where('id', 'in', ids).execute();
  }

  /** The append lock is a session lock: a statement that failed while drawing may still hold it. */
  private async releaseAppendLock(connection: Kysely<CrmTables>): Promise<void> {
    if (this.dialect !== 'postgres') return;
    try {
      await sql`select pg_advisory_unlock(${APPEND_LOCK})`.execute(connection);
    } catch {
      // The connection is gone, and the server released its session's locks with it.
    }
  }

  /** The events with these ids, by id (ids with no event are left out). */
  async getMany(eventIds: readonly string[]): Promise<Map<string, CustomerEvent>> {
    if (eventIds.length === 0) return new Map();
    // By id, not by position: a caller holds ids from rows committed with their events.
    const rows = await this.db
      .selectFrom('events')
      .select(EVENT_COLUMNS)
      .where('id', 'in', eventIds)
      .execute();
    return new Map(rows.map((row) => [row.id, toEvent(row)]));
  }

  /**
   * Called with each notification on `EVENTS_CHANNEL` while `listening` (other CRM processes on
   * this database commit events): wakes long-polls and relays as a commit here would; a waiting
   * long-poll then re-reads only every few seconds, as a safety net. `listening` false (the
   * listening connection failed) goes back to re-reading every 250 ms.
   */
  wakeOnNotifications(listening: boolean): (payload: string) => void {
    this.recheckMs = listening ? NOTIFIED_RECHECK_MS : RECHECK_MS;
    return (payload) => {
      if (payload !== this.notifier) this.appended.emit('committed');
    };
  }

  /**
   * Calls `listener` after every commit of new events in this process (relays wake on it), and
   * for each commit another process announced. `webhookMessages` is false when the commit is known
   * to have queued no webhook message (no endpoint is subscribed), so the sender need not look.
   */
  onCommitted(listener: (commit: { webhookMessages: boolean }) => void): void {
    this.appended.on('committed', (commit?: { webhookMessages: boolean }) =>
      listener(commit ?? { webhookMessages: true }),
    );
  }

  /**
   * Up to `limit` events after `position`, in position order, stopping before the first one a
   * lower position may still commit ahead of; see "Feed order" above.
   */
  async readAfter(position: number, limit: number): Promise<CustomerEvent[]> {
    if (this.dialect === 'sqlite') {
      const rows = await this.db
        .selectFrom('events')
        .select(EVENT_COLUMNS)
        .where('position', '>', position)
        .orderBy('position')
        .limit(limit)
        .execute();
      return rows.map(toEvent);
    }
    const { rows } = await selectFeedPage(position, limit).execute(this.db);
    const unsettled = rows.findIndex((row) => !row.settled);
    if (unsettled === -1) {
      this.waitingReads = 0;
      return rows.map(toEvent);
    }
    this.wakeReadersSoon();
    return rows.slice(0, unsettled).map(toEvent);
  }

  /**
   * Committed events are waiting for an earlier transaction, which may be no append of this
   * process (then nothing here would say when it ends): wake readers and relays again soon,
   * backing off while the wait lasts.
   */
  private wakeReadersSoon(): void {
    if (this.wakeTimer || this.closed) return;
    this.waitingReads += 1;
    const delay = retryDelayMs(this.waitingReads, { baseMs: 10, maxDelayMs: 250 });
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.appended.emit('committed');
    }, delay);
    this.wakeTimer.unref();
  }

  /**
   * Long-poll: reads events after `position`; when there are none, waits up to `waitMs` for one.
   * Wakes at once for commits in this process, and for those of other processes when they are
   * announced (`wakeOnNotifications`); re-reads every `recheckMs` in case one was not.
   */
  async waitAfter(
    position: number,
    limit: number,
    waitMs: number,
    recheckMs = this.recheckMs,
  ): Promise<CustomerEvent[]> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const events = await this.readAfter(position, limit);
      const remaining = deadline - Date.now();
      if (events.length > 0 || remaining <= 0 || this.closed) return events;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), Math.min(remaining, recheckMs));
      try {
        await once(this.appended, 'committed', { signal: controller.signal });
      } catch {
        // timed out: re-read
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Ends every long-poll at once (shutdown); they answer with what they have. */
  close(): void {
    this.closed = true;
    clearTimeout(this.wakeTimer);
    this.appended.emit('committed');
  }
}
