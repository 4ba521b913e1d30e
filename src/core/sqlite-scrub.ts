import fs from 'node:fs';
import { sql, type Kysely } from 'kysely';

/** How long a SQLite statement waits for another process's lock before failing, in ms. */
export const SQLITE_BUSY_TIMEOUT_MS = 5_000;

/** Longest wait between two tries of a scrub that found the file busy, in ms. */
const LONGEST_RETRY_MS = 60_000;

/**
 * After erasures, rewrites a SQLite database so that no byte of what they erased is left in its
 * files. `secure_delete` zeroes a deleted or overwritten row where it lies, but a b-tree rebalance
 * copies rows between pages and leaves the old copies in the page's unallocated space, and the
 * write-ahead log keeps older page images until a checkpoint. `VACUUM` rebuilds every page from
 * the live rows; a `wal_checkpoint(TRUNCATE)` then empties the log.
 *
 * A marker file beside the database (`<file>-scrub`) records that a scrub is due, so one a crash
 * or a stop came before is run by the next process that opens the file.
 */
export class SqliteScrubber {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private marked = false;
  /** An erasure came after the scrub now running started. */
  private dueAgain = false;
  private tries = 0;
  private stopped = false;

  /**
   * @param afterMs how long after an erasure the scrub runs (`SQLITE_SCRUB_AFTER_MS`); erasures in
   *   between share it.
   */
  constructor(
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- pragmas need no typed tables
    private readonly db: Kysely<any>,
    file: string,
    private readonly afterMs: number,
  ) {
    this.marker = `${file}-scrub`;
  }

  private readonly marker: string;

  /** Schedules the scrub an earlier process left due (its marker file is there), if any. */
  resume(): void {
    if (!fs.existsSync(this.marker)) return;
    this.marked = true;
    this.schedule(this.afterMs);
  }

  /** Records that an erasure committed: a scrub is due, at the latest `afterMs` from now. */
  erased(): void {
    if (this.stopped) return;
    if (!this.marked) {
      // Written before anything waits on it, so the next process finds it after a crash.
      fs.writeFileSync(this.marker, '');
      this.marked = true;
    }
    if (this.running) this.dueAgain = true;
    else this.schedule(this.afterMs);
  }

  /** Cancels a scheduled scrub (its marker stays, for the next process) and waits for a running one. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.run().finally(() => (this.running = undefined));
    }, delayMs);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    this.dueAgain = false;
    const done = await this.db
      .connection()
      .execute(async (connection) => {
        // No busy wait: another process writing or reading makes it fail at once, rather than
        // hold this process's one connection (and its event loop) for the busy timeout.
        await sql`pragma busy_timeout = 0`.execute(connection);
        try {
          await sql`vacuum`.execute(connection);
          const { rows } = await sql<{ busy: number }>`pragma wal_checkpoint(TRUNCATE)`.execute(
            connection,
          );
          return rows[0]?.busy !== 1;
        } finally {
          await sql`pragma busy_timeout = ${sql.raw(String(SQLITE_BUSY_TIMEOUT_MS))}`.execute(
            connection,
          );
        }
      })
      .catch(() => false);
    if (done && !this.dueAgain) {
      fs.rmSync(this.marker, { force: true });
      this.marked = false;
      this.tries = 0;
      return;
    }
    // Busy: try again, further apart each time; the marker keeps it due across restarts.
    this.tries = done ? 0 : this.tries + 1;
    this.schedule(done ? this.afterMs : Math.min(LONGEST_RETRY_MS, 1_000 * 2 ** this.tries));
  }
}
