import type { Kysely } from 'kysely';
import type { IncidentType } from '../../contracts/alerts.js';
import type { DialectName } from '../../core/db.js';
import type { Logger } from '../../core/logging.js';
import { RepeatingTask } from '../../core/repeating-task.js';
import type { IntegrationTables } from '../migrations.js';
import { INVENTORY } from '../store/controls.js';
import { resolveDeadLettersIfNone } from './dead-letters.js';
import {
  confirmIncident,
  openIncident,
  resolveIncident,
  type IncidentReport,
} from './incidents.js';

/**
 * Incidents an instance holds by its own state (its circuit, its feed loop): each instance that
 * still sees the condition confirms it on every look, and one that no instance has confirmed for
 * `staleAfterMs` is resolved, so an instance that dies with its circuit open does not leave the
 * incident open for good (and the next outage silent).
 */
const INSTANCE_HELD: IncidentType[] = ['circuit.opened', 'feed.stalled'];

/** A source that can stall: the feed's poll loop (`FeedSource`). */
export interface StallingSource {
  readonly name: string;
  /** How long it has gone without finishing a read, when that is too long; else undefined. */
  stalledForMs(now?: number): number | undefined;
}

export interface AlertMonitorOptions {
  db: Kysely<IntegrationTables>;
  dialect: DialectName;
  /** Deliveries still to be made (pending, retrying, delivering). */
  backlog: () => Promise<number>;
  /** `backlog.high` when the backlog is over this… (`ALERT_BACKLOG`). */
  backlogThreshold: number;
  /** …for this long, in ms (`ALERT_FOR_MS`). */
  forMs: number;
  /** The feed sources this instance runs. */
  feeds: readonly StallingSource[];
  /** This instance's name: a stalled loop is this instance's own incident. */
  instanceId: string;
  /** Whether this instance's circuit to Inventory is open or half-open now. */
  circuitOpen: () => boolean;
  logger: Logger;
}

/** How often conditions are looked at: often enough to honour ALERT_FOR_MS, at most every 5 s. */
export const checkIntervalMs = (forMs: number) =>
  Math.max(100, Math.min(5_000, Math.floor(forMs / 2)));

/** An instance-held incident no instance has confirmed for this long is over, in ms. */
export const staleAfterMs = (forMs: number) => Math.max(10_000, 6 * checkIntervalMs(forMs));

/**
 * Watches the conditions that are states rather than events, and opens or resolves their
 * incidents: the backlog over ALERT_BACKLOG for ALERT_FOR_MS, a stalled feed loop, and the end of
 * a dead-letter incident (no dead letter left). Every instance watches; the incident rows make
 * each condition alert once.
 */
export class AlertMonitor {
  private readonly task = new RepeatingTask(() => this.step());
  /** Since when this instance has seen the backlog over the threshold. */
  private backlogOverSince: number | undefined;

  constructor(private readonly options: AlertMonitorOptions) {}

  start(): void {
    this.task.start();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }

  /** One look at every condition; failures are logged and the next look tries again. */
  async check(now = Date.now()): Promise<void> {
    const { db, dialect } = this.options;
    await resolveDeadLettersIfNone(db, dialect, now);
    await this.checkBacklog(now);
    if (this.options.circuitOpen()) await confirmIncident(db, 'circuit.opened', INVENTORY, now);
    for (const feed of this.options.feeds) {
      const stalledMs = feed.stalledForMs(now);
      const seconds = Math.round((stalledMs ?? 0) / 1000);
      await this.setCondition(
        stalledMs !== undefined,
        {
          type: 'feed.stalled',
          key: `${feed.name}@${this.options.instanceId}`,
          summary:
            stalledMs !== undefined
              ? `The ${feed.name} loop on ${this.options.instanceId} has not finished a read of the CRM feed for ${seconds} s; new customers may not be seen.`
              : `The ${feed.name} loop on ${this.options.instanceId} reads the CRM feed again.`,
          details: {
            source: feed.name,
            instance: this.options.instanceId,
            stalled_ms: stalledMs ?? 0,
          },
        },
        now,
      );
    }
    await this.resolveUnconfirmed(now);
  }

  /** Resolves the instance-held incidents no instance has confirmed for `staleAfterMs`. */
  private async resolveUnconfirmed(now: number): Promise<void> {
    const seenBefore = now - staleAfterMs(this.options.forMs);
    const stale = await this.options.db
      .selectFrom('alert_incidents')
      .select(['type', 'key'])
      .where('type', 'in', INSTANCE_HELD)
      .where('closed_at', 'is', null)
      .where('last_seen_at', '<', seenBefore)
      .execute();
    for (const { type, key } of stale) {
      const seconds = Math.round((now - seenBefore) / 1000);
      const summary = `No instance has reported this for ${seconds} s: the instance that did stopped, or the condition ended unseen.`;
      await resolveIncident(this.options.db, { type, key, summary }, now, seenBefore);
    }
  }

  private async checkBacklog(now: number): Promise<void> {
    const { backlogThreshold, forMs } = this.options;
    const backlog = await this.options.backlog();
    const over = backlog > backlogThreshold;
    this.backlogOverSince = over ? (this.backlogOverSince ?? now) : undefined;
    const overMs = this.backlogOverSince === undefined ? 0 : now - this.backlogOverSince;
    const held = over && overMs >= forMs;
    // Between the threshold and ALERT_FOR_MS nothing changes: an open incident stays open.
    if (over && !held) return;
    await this.setCondition(
      held,
      {
        type: 'backlog.high',
        key: INVENTORY,
        summary: held
          ? `${backlog} deliveries to Inventory are waiting, over ALERT_BACKLOG (${backlogThreshold}) for ${Math.round(overMs / 1000)} s.`
          : `The backlog is back to ${backlog} deliveries, at most ALERT_BACKLOG (${backlogThreshold}).`,
        details: { backlog, threshold: backlogThreshold },
      },
      now,
    );
  }

  /**
   * While `holds`: opens the incident, or confirms the open one; once it does not, resolves it.
   */
  private async setCondition(holds: boolean, report: IncidentReport, now: number): Promise<void> {
    const { db } = this.options;
    const open = await this.isOpen(report.type, report.key);
    if (holds && !open) await openIncident(db, report, now);
    if (holds && open) await confirmIncident(db, report.type, report.key, now);
    if (!holds && open) await resolveIncident(db, report, now);
  }

  private async isOpen(type: IncidentType, key: string): Promise<boolean> {
    const row = await this.options.db
      .selectFrom('alert_incidents')
      .select('id')
      .where('type', '=', type)
      .where('key', '=', key)
      .where('closed_at', 'is', null)
      .executeTakeFirst();
    return row !== undefined;
  }

  private async step(): Promise<number> {
    try {
      await this.check();
    } catch (error) {
      this.options.logger.error({ err: error }, 'Could not check the alert conditions; retrying');
    }
    return checkIntervalMs(this.options.forMs);
  }
}

/**
 * The circuit's alerts, for `createCircuit`'s `onStateChange`: `circuit.opened` when it opens
 * (once, whichever instance's circuit opens first), `circuit.closed` when a circuit closes after
 * that. Never throws: a failure to record the alert is logged.
 */
export function circuitAlerts(db: Kysely<IntegrationTables>, destination: string, logger: Logger) {
  let previous: string = 'closed';
  return (state: 'closed' | 'half_open' | 'open', resetMs: number): void => {
    const was = previous;
    previous = state;
    const report = {
      type: 'circuit.opened' as const,
      key: destination,
      details: { destination },
    };
    const recorded =
      state === 'open' && was !== 'open'
        ? openIncident(db, {
            ...report,
            summary: `The circuit to ${destination} opened: calls failed, so they pause for ${resetMs} ms at a time until a probe call succeeds.`,
          })
        : state === 'closed' && was !== 'closed'
          ? resolveIncident(db, {
              ...report,
              summary: `The circuit to ${destination} closed: calls succeed again.`,
            })
          : undefined;
    recorded?.catch((error: unknown) =>
      logger.error({ err: error }, `Could not record the circuit alert for ${destination}`),
    );
  };
}
