import type { Kysely } from 'kysely';
import { Counter, type Registry } from 'prom-client';
import { chunk } from '../core/batches.js';
import type { DialectName } from '../core/db.js';
import type { Logger } from '../core/logging.js';
import { claimDueOutboxRows } from '../core/outbox-claims.js';
import { WorkLoop } from '../core/work-loop.js';
import type { CrmConfig } from './config.js';
import type { CustomerEvent } from '../contracts/customer-events.js';
import type { EventLog } from './events.js';
import type { CrmTables } from './migrations.js';
import type { SecretsKeyring } from './secrets-at-rest.js';
import { WebhookCaller } from './webhook-call.js';
import { WebhookOutcomes, type CallResult } from './webhook-outcomes.js';
import type { WebhookHandOff, WebhookMessageRow } from './webhook-hand-off.js';
import type { WebhookTargetPolicy } from '../core/webhooks/targets.js';

/**
 * Batches in flight at once. Each batch's calls run side by side and its outcomes are written in
 * one transaction; while both batches are busy, due messages gather for the next claim, so the
 * database work per message shrinks as the rate grows instead of capping it.
 */
const BATCHES_IN_FLIGHT = 2;
/**
 * How often the sender looks for due messages while none is known to wait (every message written
 * since was handed over at once): for retries coming due and claims that lapsed, in ms.
 */
const IDLE_LOOK_MS = 500;

type MessageRow = WebhookMessageRow;
/** Messages sent side by side, with their events when the append that wrote them handed them over. */
interface MessageBatch {
  messages: MessageRow[];
  events?: ReadonlyMap<string, CustomerEvent>;
  /** The customers its calls are about, counted in `customersInFlight` until it is recorded. */
  customers?: string[];
  /** Claimed, and its customers not known yet (counted in `claimedUnheld`). */
  unheld?: boolean;
}
type Db = Kysely<CrmTables>;

export interface WebhookSenderOptions {
  db: Db;
  dialect: DialectName;
  events: EventLog;
  config: CrmConfig;
  /** Where calls may go besides the public internet. */
  targets: WebhookTargetPolicy;
  /** Opens the stored signing secrets. */
  keyring: SecretsKeyring;
  logger: Logger;
  metrics: Registry;
}

/**
 * Sends the outbox's webhook messages: each event to each endpoint, signed as the Standard Webhooks
 * specification says, until an endpoint answers 2xx within the timeout. Failures are retried with
 * exponential backoff and full jitter; every attempt is recorded. An endpoint is disabled when it
 * answers 410 Gone, or when every call to it has failed for `webhookDisableAfterMs`.
 */
export class WebhookSender implements WebhookHandOff {
  private readonly loop: WorkLoop<MessageBatch>;
  private readonly caller: WebhookCaller;
  private readonly outcomes: WebhookOutcomes;
  private readonly batchSize: number;
  private stopping = false;
  /** Messages may be due that no look has seen yet (written pending, woken, just started). */
  private unclaimedDue = true;
  /** Appends that wrote their messages pending: a look that began before one cannot clear the above. */
  private pendingWrites = 0;
  private lastLookAt = 0;
  /** Calls in flight per customer: a handed-over message must not overtake an earlier one. */
  private readonly customersInFlight = new Map<string, number>();
  /** Claims running: what they take is not in flight yet, so nothing is handed over meanwhile. */
  private claiming = 0;
  /** Claimed batches whose customers are not known yet: nothing is handed over meanwhile. */
  private claimedUnheld = 0;

  constructor(private readonly options: WebhookSenderOptions) {
    this.caller = new WebhookCaller({
      targets: options.targets,
      keyring: options.keyring,
      timeoutMs: options.config.webhookTimeoutMs,
    });
    const attempts = new Counter({
      name: 'crm_webhook_attempts_total',
      help: 'Webhook calls by outcome: success, failure, gone (410 Gone: endpoint disabled).',
      labelNames: ['outcome'],
      registers: [options.metrics],
    });
    this.outcomes = new WebhookOutcomes(options, attempts);
    const batchSize = Math.max(1, Math.ceil(options.config.webhookConcurrency / BATCHES_IN_FLIGHT));
    this.batchSize = batchSize;
    this.loop = new WorkLoop<MessageBatch>({
      name: 'webhook messages',
      concurrency: BATCHES_IN_FLIGHT,
      claim: (batches) => this.claimDue(batches * batchSize),
      handle: async (batch, abandoned) => {
        try {
          await this.sendBatch(batch, abandoned);
        } finally {
          this.heldOrGone(batch);
          this.letGo(batch.customers);
        }
      },
      logger: options.logger,
      idleMs: IDLE_LOOK_MS,
    });
  }

  start(): void {
    this.loop.start();
  }

  /** Messages may be due (written pending, by another process, replayed): look for them now. */
  wake(): void {
    this.unclaimedDue = true;
    this.pendingWrites += 1;
    this.loop.wake();
  }

  claimUntil(now: number, customerIds: readonly string[]): number | undefined {
    // Older messages still due go first; each look after a finished batch takes them.
    if (
      this.stopping ||
      this.unclaimedDue ||
      this.handOffSlots() <= 0 ||
      customerIds.some((id) => this.customersInFlight.has(id))
    ) {
      this.pendingWrites += 1;
      this.unclaimedDue = true;
      return undefined;
    }
    return this.lockedUntil(now);
  }

  committed(messages: MessageRow[], events: ReadonlyMap<string, CustomerEvent>): void {
    // Stopping: due at once again, for whichever sender runs next.
    if (this.stopping) return void this.release(messages);
    // A claim that lapsed before the commit (a transaction held up that long) is anyone's now.
    const now = Date.now();
    const live = messages.filter((message) => (message.locked_until ?? 0) > now);
    if (live.length < messages.length) this.wake();
    // A burst's append may bring more than the free slots take (or a claim took them since): the
    // rest go back to the claims, so no more than `webhookConcurrency` calls run at once.
    const batches = chunk(live, this.batchSize);
    const taken = batches.splice(0, this.handOffSlots());
    for (const batch of taken) {
      this.loop.handleNow({ messages: batch, events, customers: this.hold(batch, events) });
    }
    if (batches.length > 0) void this.release(batches.flat());
  }

  /** Batches a hand-over may start now: none while a claim runs or a claimed batch is unplaced. */
  private handOffSlots(): number {
    if (this.claiming > 0 || this.claimedUnheld > 0) return 0;
    return Math.max(0, this.loop.freeSlots);
  }

  /** A claimed batch's customers are counted (or it ended before): hand-overs may go again. */
  private heldOrGone(batch: MessageBatch): void {
    if (!batch.unheld) return;
    batch.unheld = false;
    this.claimedUnheld -= 1;
  }

  /**
   * Stops sending and closes the connections; safe to call more than once. Calls still in flight
   * after `abandonAfterMs` are stopped, and their messages released unrecorded, to be sent again
   * (receivers deduplicate on `webhook-id`). Default: wait for every call.
   */
  async stop(abandonAfterMs?: number): Promise<void> {
    this.stopping = true;
    await this.loop.stop(abandonAfterMs);
    await this.caller.close();
  }

  /** Counts the customers of `messages` as having a call in flight; answers them. */
  private hold(messages: MessageRow[], events: ReadonlyMap<string, CustomerEvent>): string[] {
    const customers: string[] = [];
    for (const message of messages) {
      const customer = events.get(message.event_id)?.data.id;
      if (customer === undefined) continue;
      customers.push(customer);
      this.customersInFlight.set(customer, (this.customersInFlight.get(customer) ?? 0) + 1);
    }
    return customers;
  }

  private letGo(customers: string[] | undefined): void {
    for (const customer of customers ?? []) {
      const left = (this.customersInFlight.get(customer) ?? 1) - 1;
      if (left > 0) this.customersInFlight.set(customer, left);
      else this.customersInFlight.delete(customer);
    }
  }

  /** Outlives one call; a crashed sender's claims are taken over this long after it died. */
  private lockedUntil(now: number): number {
    return now + this.options.config.webhookTimeoutMs + 5_000;
  }

  /**
   * Claims due messages. While none is known to wait, a look after each finished batch would find
   * nothing: the database is asked only every `IDLE_LOOK_MS` then.
   */
  private async claimDue(limit: number, now = Date.now()): Promise<MessageBatch[]> {
    if (!this.unclaimedDue && now < this.lastLookAt + IDLE_LOOK_MS) return [];
    const { db, dialect } = this.options;
    const pendingWrites = this.pendingWrites;
    this.lastLookAt = now;
    this.claiming += 1;
    try {
      const rows = await claimDueOutboxRows(db, dialect, 'webhook_messages', {
        limit,
        lockedUntil: this.lockedUntil(now),
        now,
      });
      // A full claim may have left more due; one that took less saw everything due, unless a
      // write or a wake came while it ran.
      if (rows.length >= limit) this.unclaimedDue = true;
      else if (pendingWrites === this.pendingWrites) this.unclaimedDue = false;
      const batches = chunk(rows, this.batchSize).map((messages) => ({ messages, unheld: true }));
      this.claimedUnheld += batches.length;
      return batches;
    } finally {
      this.claiming -= 1;
    }
  }

  /** Calls the endpoints for a claimed batch side by side, then records every outcome at once. */
  private async sendBatch(batch: MessageBatch, abandoned: AbortSignal): Promise<void> {
    const { messages, events: handedOver } = batch;
    const { db, events } = this.options;
    const now = Date.now();
    const endpointIds = [...new Set(messages.map((message) => message.endpoint_id))];
    const endpoints = new Map(
      (
        await db
          .selectFrom('webhook_endpoints')
          .selectAll()
          .where('id', 'in', endpointIds)
          .execute()
      ).map((endpoint) => [endpoint.id, endpoint]),
    );
    let eventsById = handedOver;
    if (!eventsById) {
      eventsById = await events.getMany([...new Set(messages.map((m) => m.event_id))]);
      batch.customers = this.hold(messages, eventsById);
      this.heldOrGone(batch);
    }
    const cancelled: MessageRow[] = [];
    const calls: Promise<CallResult>[] = [];
    for (const message of messages) {
      const endpoint = endpoints.get(message.endpoint_id);
      const event = eventsById.get(message.event_id);
      if (!endpoint || endpoint.disabled_at !== null || !event) cancelled.push(message);
      else {
        calls.push(
          this.caller
            .call(endpoint, event, now, abandoned)
            .then((outcome) => ({ message, endpoint, event, ...outcome })),
        );
      }
    }
    const results = await Promise.all(calls);
    if (abandoned.aborted) return this.release(messages);
    const logs: (() => void)[] = [];
    await db.transaction().execute(async (trx) => {
      for (const message of cancelled) {
        await this.outcomes.finish(trx, message, {
          state: 'cancelled',
          last_error: 'endpoint deleted or disabled',
        });
      }
      if (results.length > 0) {
        await trx
          .insertInto('webhook_attempts')
          .values(
            results.map((result) => ({
              endpoint_id: result.endpoint.id,
              event_id: result.event.id,
              attempted_at: now,
              status: result.status,
              error: result.error,
              duration_ms: result.durationMs,
            })),
          )
          .execute();
      }
      const succeeded = results.filter((result) => result.error === null);
      logs.push(...(await this.outcomes.recordSuccesses(trx, succeeded)));
      for (const result of results) {
        if (result.error !== null) logs.push(await this.outcomes.record(trx, result, now));
      }
      for (const endpoint of endpoints.values()) {
        const own = results.filter((result) => result.endpoint.id === endpoint.id);
        if (own.length > 0)
          logs.push(...(await this.outcomes.updateEndpoint(trx, endpoint, own, now)));
      }
    });
    for (const log of logs) log();
  }

  /**
   * Gives claimed messages back as they were, due at once (a shutdown stopped their calls, or a
   * hand-over found no free slot). Marked due before the write, so no hand-over overtakes them,
   * and the loop woken after it, so its claim sees them.
   */
  private async release(messages: MessageRow[]): Promise<void> {
    this.unclaimedDue = true;
    this.pendingWrites += 1;
    await this.options.db
      .updateTable('webhook_messages')
      .set({ locked_until: null })
      .where(
        'seq',
        'in',
        messages.map((message) => message.seq),
      )
      .where('state', '=', 'pending')
      .execute()
      .catch((error: unknown) =>
        this.options.logger.error(
          { err: error },
          'Could not release webhook messages; their claims will expire',
        ),
      );
    this.loop.wake();
  }
}
