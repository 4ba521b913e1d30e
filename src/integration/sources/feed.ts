import type { PollStatus } from '../../contracts/admin-api.js';
import { retryDelayMs } from '../../core/backoff.js';
import type { Logger } from '../../core/logging.js';
import { RepeatingTask, type NextStep } from '../../core/repeating-task.js';
import type { FeedEvent } from '../../contracts/customer-events.js';
import type { CrmClient } from '../crm-client.js';
import { TransientError } from '../../core/retryable-errors.js';
import { isoOrNull } from '../../core/iso.js';
import type { IntegrationMetrics } from '../metrics.js';
import type { InboxRepository } from '../store/inbox.js';
import type { LeasesRepository } from '../store/leases.js';
import { deliveryOfEvent, type NewDelivery } from '../store/new-delivery.js';
import type { Inbox, Source, SourceContext } from './source.js';

export const POLL_LEASE = 'poll:crm';
/** The cursor the feed moves (the CRM's change feed). */
export const FEED_CURSOR = 'crm';
const RECONCILE_PAGE_PAUSE_MS = 100;
/** Most pushed positions the cursor passes over in one step. */
const PASS_PUSHED_LIMIT = 5_000;
/**
 * Longest the poller waits for the deliveries to have room for its next page before reading it
 * anyway (written pending then): calls end sooner than this at backlog rates, and a slow Inventory
 * never keeps the feed unread, so its customers still show as pending in the status.
 */
const ROOM_WAIT_MS = 250;
/** Backoff after failed reads: the first pause is at most 500 ms, doubling up to 16 s. */
const FAILURE_BACKOFF = { baseMs: 500, maxDelayMs: 16_000 };

export interface FeedSourceOptions {
  leases: LeasesRepository;
  crm: CrmClient;
  /** Longest wait between two reads of the feed, in ms; also the long-poll wait. */
  intervalMs: number;
  batchSize: number;
  /** How long the poll lease lasts without renewal, in ms. */
  leaseMs: number;
  instanceId: string;
  logger: Logger;
  metrics: IntegrationMetrics;
  /**
   * Reconciliation beside a push source (hybrid mode): read every `intervalMs` without holding
   * the read open, and count what push had not recorded. Default false (follow the feed closely).
   */
  reconcile?: boolean;
  /**
   * With `reconcile`: only events at least this old (by their `occurred_at`) are recorded from the
   * feed, so push has had its chance and the feed repairs only the gaps it left; idle, the feed is
   * read every half of it (at least every 100 ms). Default 0 (record at once, every `intervalMs`).
   */
  repairAfterMs?: number;
  /**
   * With `reconcile`: moves the cursor over the feed positions push has recorded without a gap
   * (store/inbox.ts), before each read, so the feed is read only where push left a gap. Default
   * none: every event is read from the feed again.
   */
  passPushed?: InboxRepository['passPushed'];
}

interface FeedState {
  /** True while this instance holds the poll lease. */
  leader: boolean;
  lastSuccessAt: number | undefined;
  lastError: string | undefined;
  lastErrorAt: number | undefined;
  /** When the loop last finished an iteration, successful or not. */
  lastTickAt: number;
}

/**
 * Follows the CRM's change feed from a persisted cursor (`SYNC_MODE=poll`, and reconciliation in
 * hybrid mode). One instance at a time polls (it holds a lease); each read's events and the
 * cursor's move commit together, so a crash at any point neither skips nor loses an event. Reads
 * long-poll: an empty read waits on the CRM for up to the interval, so a new customer is seen
 * within milliseconds and an idle feed costs one request per interval. Beside push (`reconcile`),
 * the cursor first moves over what push recorded (`passPushed`), so only gaps are read again.
 * The next page is read when the deliveries have room to send it (`Inbox.waitForRoom`, at most
 * `ROOM_WAIT_MS`), so its new customers are written claimed and sent at once.
 */
export class FeedSource implements Source {
  readonly name: 'poll' | 'reconcile';
  readonly statusField = 'poll';
  private readonly task = new RepeatingTask(() => this.step());
  private readonly abort = new AbortController();
  private inbox: Inbox | undefined;
  private failures = 0;
  /** The last read came back full, as leader: more events are waiting to be read. */
  private behind = false;
  /** When this source started: events before it are repaired without waiting. */
  private startedAt = Date.now();
  /** Set by `start()`: a loop that has not started yet is not stalled, however long start-up takes. */
  private started = false;
  private readonly state: FeedState = {
    leader: false,
    lastSuccessAt: undefined,
    lastError: undefined,
    lastErrorAt: undefined,
    lastTickAt: Date.now(),
  };

  constructor(private readonly options: FeedSourceOptions) {
    this.name = options.reconcile ? 'reconcile' : 'poll';
  }

  /** Longest a healthy loop goes without finishing an iteration, in ms. */
  get tickBudgetMs(): number {
    return this.waitMs() + this.options.intervalMs;
  }

  /** How long the loop has gone without finishing a read, when that is over three budgets. */
  stalledForMs(now = Date.now()): number | undefined {
    if (!this.started) return undefined;
    const silentMs = now - this.state.lastTickAt;
    return silentMs > 3 * this.tickBudgetMs ? silentMs : undefined;
  }

  notReadyReason(): string | undefined {
    const stalledMs = this.stalledForMs();
    return stalledMs === undefined
      ? undefined
      : `the poll loop has not completed a read for ${Math.round(stalledMs / 1000)} s`;
  }

  async details(): Promise<PollStatus> {
    const { state } = this;
    return {
      leader: state.leader,
      lease_holder: (await this.options.leases.leaseHolder(POLL_LEASE)) ?? null,
      last_success_at: isoOrNull(state.lastSuccessAt),
      last_error: state.lastError ?? null,
      last_error_at: isoOrNull(state.lastErrorAt),
      stalled: this.stalledForMs() !== undefined,
    };
  }

  /** How often reconciliation reads the feed when it has caught up. */
  private reconcileIntervalMs(): number {
    const { repairAfterMs, intervalMs } = this.options;
    return repairAfterMs ? Math.max(100, Math.floor(repairAfterMs / 2)) : intervalMs;
  }

  /**
   * The events of a page to record now: all of them, or, when repairing gaps, those old enough
   * that push would have delivered them by now, and those recorded before this process started
   * (the feed is in commit order: the first one too young ends the run).
   */
  private due(events: FeedEvent[], now = Date.now()): FeedEvent[] {
    const { reconcile, repairAfterMs } = this.options;
    if (!reconcile || !repairAfterMs) return events;
    // What was recorded before this process started could not be pushed to it: due at once.
    const youngest = Math.max(now - repairAfterMs, this.startedAt);
    const young = events.findIndex((event) => Date.parse(event.occurred_at) > youngest);
    return young === -1 ? events : events.slice(0, young);
  }

  private waitMs(): number {
    if (this.options.reconcile) return 0;
    // Renew the lease well before it lapses, however long the CRM holds a read.
    return Math.min(this.options.intervalMs, Math.floor(this.options.leaseMs / 3), 25_000);
  }

  start(inbox: Inbox): void {
    this.inbox = inbox;
    this.startedAt = Date.now();
    this.state.lastTickAt = Date.now();
    this.started = true;
    this.task.start();
  }

  /** Stops polling, abandons a long-poll in flight and hands the lease to the next instance. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.task.stop();
    if (this.state.leader) {
      await this.options.leases.releaseLease(POLL_LEASE, this.options.instanceId).catch(() => {});
      this.state.leader = false;
    }
  }

  /** One iteration of the loop; answers how long to pause before the next. */
  private async step(): Promise<NextStep> {
    let pause = 0;
    try {
      // Behind a full page more are waiting: read the next when the deliveries can send it
      // (written claimed, it needs no claim query). Caught up, read at once: a long poll follows.
      if (this.behind) {
        const roomWaitMs = Math.min(ROOM_WAIT_MS, this.waitMs());
        await this.inbox!.waitForRoom(this.options.batchSize, roomWaitMs, this.abort.signal);
        if (this.abort.signal.aborted) return 'done';
      }
      const more = await this.pollOnce(this.inbox!);
      this.behind = more;
      this.failures = 0;
      // Not the leader: look at the lease again after a while. The leader reads on at once: a
      // full page may have more behind it, and an empty read has already waited on the CRM;
      // reconciliation waits for its next round.
      if (!this.state.leader) {
        pause = Math.min(this.options.intervalMs, this.options.leaseMs / 3);
      } else if (this.options.reconcile) {
        // Reconciliation re-reads what push already delivered: spread its pages out so it never
        // competes with push for the CPU (at most 10 pages a second).
        pause = more ? RECONCILE_PAGE_PAUSE_MS : this.reconcileIntervalMs();
      }
    } catch (error) {
      if (this.abort.signal.aborted) return 'done';
      this.failures += 1;
      const message = (error as Error).message;
      this.state.lastError = message;
      this.state.lastErrorAt = Date.now();
      this.options.metrics.polls.inc({ result: 'error' });
      // A CRM that says when to come back (429 or 503 with Retry-After) is not asked sooner.
      pause = retryDelayMs(
        this.failures,
        {
          baseMs: FAILURE_BACKOFF.baseMs,
          maxDelayMs: Math.min(this.options.intervalMs, FAILURE_BACKOFF.maxDelayMs),
        },
        error instanceof TransientError ? error.retryAfterMs : undefined,
      );
      this.options.logger.warn(
        `Reading the CRM feed failed: ${message}; trying again in ${pause} ms`,
      );
    }
    this.state.lastTickAt = Date.now();
    return pause;
  }

  private lostLease(): false {
    this.options.logger.warn(
      'Lost the poll lease while reading the feed; nothing recorded from that read',
    );
    this.state.leader = false;
    return false;
  }

  /**
   * One read, recorded into `inbox`; answers true when a full page came back (more may be
   * waiting).
   */
  async pollOnce(inbox: Pick<Inbox, 'recordFromFeed'>): Promise<boolean> {
    const { leases, crm, batchSize, leaseMs, instanceId, logger, metrics } = this.options;
    const leader = await leases.acquireLease(POLL_LEASE, instanceId, leaseMs);
    if (leader !== this.state.leader) {
      logger.info(
        leader
          ? 'Took the poll lease: this instance reads the CRM feed'
          : 'Another instance holds the poll lease',
      );
      this.state.leader = leader;
    }
    if (!leader) return false;

    const lease = { name: POLL_LEASE, holder: instanceId };
    // During a resync every event is read again, pushed or not (a restored database, lost rows).
    const resyncing = this.options.passPushed && (await leases.readResync(FEED_CURSOR));
    const from =
      this.options.passPushed && !resyncing
        ? await this.options.passPushed(FEED_CURSOR, lease, PASS_PUSHED_LIMIT)
        : await leases.readCursor(FEED_CURSOR);
    if (from === undefined) return this.lostLease();
    const requestStarted = performance.now();
    const page = await crm.readEvents(from, batchSize, this.waitMs(), this.abort.signal);
    const events = this.due(page);
    if (events.length === 0) {
      metrics.polls.inc({ result: 'empty' });
      this.state.lastSuccessAt = Date.now();
      return false;
    }
    const to = events[events.length - 1]!.position;
    const fresh = await inbox.recordFromFeed(
      FEED_CURSOR,
      from,
      to,
      events.flatMap((event) => deliveryOf(event, this.name)),
      lease,
    );
    metrics.pollDuration.observe((performance.now() - requestStarted) / 1000);
    // The lease lapsed or another instance moved the cursor meanwhile: nothing was written.
    if (fresh === undefined) return this.lostLease();
    metrics.polls.inc({ result: 'events' });
    this.state.lastSuccessAt = Date.now();
    if (this.options.reconcile) metrics.reconciliationFound.inc(fresh.length);
    return page.length === batchSize && events.length === page.length;
  }
}

/**
 * The desired state a feed event brings (none for a type this service does not handle); throws
 * when its data is not what its type carries.
 */
function deliveryOf(event: FeedEvent, source: string): NewDelivery[] {
  const delivery = deliveryOfEvent(event, source);
  if (!delivery) return [];
  if (delivery.ok) return [delivery.value];
  throw new Error(
    `The CRM's feed holds ${event.type} event ${event.id} (position ${event.position}) whose data is not what that type carries: ${delivery.problems.join('; ')}`,
  );
}

/** The feed source with the service's settings; `reconcile` as in `FeedSourceOptions`. */
export const createFeedSource = (
  { config, crm, store, metrics, logger }: SourceContext,
  { reconcile }: { reconcile: boolean },
) =>
  new FeedSource({
    leases: store.leases,
    ...(reconcile ? { passPushed: store.inbox.passPushed } : {}),
    crm,
    intervalMs: config.pollIntervalMs,
    repairAfterMs: reconcile ? config.gapRepairMs : 0,
    batchSize: config.pollBatchSize,
    leaseMs: config.leaseMs,
    instanceId: config.instanceId,
    logger,
    metrics,
    reconcile,
  });
