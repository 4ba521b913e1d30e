import { setImmediate as yieldToOthers } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import { ConfigError, readInteger, type Env } from './config.js';
import type { Logger } from './logging.js';

/** A day in ms: `RETENTION_DAYS` counts in these. */
export const DAY_MS = 86_400_000;

/** Rows of one table kept for `RETENTION_DAYS`: older ones are swept. */
export interface RetainedTable {
  table: string;
  /** A unique column to delete by. */
  key: string;
  /** The column that says when the row was written. */
  writtenAt: string;
  /** The cutoff as that column stores it (ms since the epoch, or an ISO-8601 string). */
  cutoff: (cutoffMs: number) => number | string;
}

/**
 * `RETENTION_DAYS` in ms (default 30 days): refused when shorter than `minimumMs`, the longest
 * window in which something this service keeps can still be needed (`why` says what).
 */
export function readRetentionMs(env: Env, minimumMs: number, why: string): number {
  const days = readInteger(env, 'RETENTION_DAYS', 30, { min: 1, max: 3650 });
  if (days * DAY_MS < minimumMs) {
    throw new ConfigError(
      'RETENTION_DAYS',
      String(days),
      `keep records at least ${Math.ceil(minimumMs / DAY_MS)} day(s): ${why}`,
    );
  }
  return days * DAY_MS;
}

/** Rows deleted per statement: short transactions, so no writer waits long behind a sweep. */
const SWEEP_BATCH = 500;

/**
 * Deletes rows older than the retention from `tables`, in small batches, every `everyMs` (default
 * an hour) in the background. Several instances sweeping at once only share the work.
 */
export class RetentionSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- one sweep serves every service's tables
    private readonly db: Kysely<any>,
    private readonly tables: readonly RetainedTable[],
    private readonly retentionMs: number,
    private readonly logger: Logger,
    private readonly everyMs = 3_600_000,
  ) {}

  start(): void {
    if (this.timer || this.running) return;
    this.stopped = false;
    const tick = () => {
      this.running = this.sweep()
        .catch((error: unknown) =>
          this.logger.warn({ err: error }, 'Could not sweep old records; trying again later'),
        )
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) this.timer = setTimeout(tick, this.everyMs).unref();
        });
    };
    // The first sweep soon after start, not at once: start-up has enough to do.
    this.timer = setTimeout(tick, Math.min(this.everyMs, 60_000)).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Deletes every row older than the retention at `now`; answers how many, per table. */
  async sweep(now = Date.now()): Promise<Record<string, number>> {
    const swept: Record<string, number> = {};
    for (const { table, key, writtenAt, cutoff } of this.tables) {
      const before = cutoff(now - this.retentionMs);
      let total = 0;
      for (;;) {
        const result = await sql`delete from ${sql.table(table)} where ${sql.ref(key)} in (
          select ${sql.ref(key)} from ${sql.table(table)} where ${sql.ref(writtenAt)} < ${before}
          limit ${SWEEP_BATCH})`.execute(this.db);
        const deleted = Number(result.numAffectedRows ?? 0);
        total += deleted;
        // A stop waits for one statement at most, not for the whole backlog.
        if (deleted < SWEEP_BATCH || this.stopped) break;
        await yieldToOthers();
      }
      swept[table] = total;
      if (total > 0) this.logger.info({ table, swept: total }, `Swept ${total} old ${table}`);
    }
    return swept;
  }
}
