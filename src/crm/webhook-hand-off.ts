import type { Selectable } from 'kysely';
import type { CustomerEvent } from '../contracts/customer-events.js';
import type { CrmTables } from './migrations.js';

export type WebhookMessageRow = Selectable<CrmTables['webhook_messages']>;

/**
 * How an append's webhook messages reach the sender without a claim query: when the sender has a
 * call slot free, they are written already claimed for it, in the append's transaction, and
 * handed over with their events once it commits. A crash before they are sent leaves them claimed
 * until `claimUntil`'s answer lapses; then any sender claims them, as after a crash mid-call.
 */
export interface WebhookHandOff {
  /**
   * Until when (ms since the epoch) the messages of events about `customerIds` written now are
   * claimed for the sender, or undefined to write them pending for its claims (no slot free,
   * stopping, older messages still due, or a call about one of these customers in flight, which
   * the new message must not overtake).
   */
  claimUntil(now: number, customerIds: readonly string[]): number | undefined;
  /** The messages written claimed by a transaction that committed, with their events by id. */
  committed(messages: WebhookMessageRow[], events: ReadonlyMap<string, CustomerEvent>): void;
}
