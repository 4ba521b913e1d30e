import type { Logger } from './logging.js';
import { RepeatingTask, type NextStep } from './repeating-task.js';

export interface WorkLoopOptions<Item> {
  /** Short name for logs, e.g. `deliveries`. */
  name: string;
  /** Items handled at once. */
  concurrency: number;
  /** Claims up to `limit` items that are due; each is then this process's to handle. */
  claim: (limit: number) => Promise<Item[]>;
  /** Handles one claimed item; must not throw (record failures as data). */
  handle: (item: Item) => Promise<void>;
  logger: Logger;
  /** Wait between looks for due work when there is none, in ms. Default 500. */
  idleMs?: number;
}

/**
 * Claims due work and handles up to `concurrency` items at once; looks again as soon as a slot
 * frees up, when woken (new work was recorded), or every `idleMs`.
 */
export class WorkLoop<Item> {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly task = new RepeatingTask(() => this.step());

  constructor(private readonly options: WorkLoopOptions<Item>) {}

  start(): void {
    this.task.start();
  }

  /** Looks for work now rather than at the next idle tick. */
  wake(): void {
    this.task.wake();
  }

  /** Items that could start now without going over `concurrency`. */
  get freeSlots(): number {
    return this.options.concurrency - this.inFlight.size;
  }

  /**
   * Handles an item claimed elsewhere (e.g. as it was recorded) at once, beside the claimed ones;
   * callers check `freeSlots` first, so `concurrency` is passed at most briefly.
   */
  handleNow(item: Item): void {
    this.startHandling(item);
  }

  /** Stops claiming and waits for the items in flight. */
  async stop(): Promise<void> {
    await this.task.stop();
    await Promise.allSettled([...this.inFlight]);
  }

  private startHandling(item: Item): void {
    const { logger, name } = this.options;
    const handling: Promise<void> = this.options
      .handle(item)
      .catch((error: unknown) => logger.error({ err: error }, `Unexpected error handling ${name}`))
      .finally(() => {
        this.inFlight.delete(handling);
        this.task.wake();
      });
    this.inFlight.add(handling);
  }

  private async step(): Promise<NextStep> {
    const { concurrency, logger, name } = this.options;
    const free = concurrency - this.inFlight.size;
    let claimed: Item[] = [];
    if (free > 0) {
      try {
        claimed = await this.options.claim(free);
      } catch (error) {
        logger.error({ err: error }, `Could not claim due ${name} from the database; retrying`);
      }
    }
    for (const item of claimed) this.startHandling(item);
    // A full batch means more may be due: look again at once, unless every slot is busy.
    const idle = claimed.length === 0 || claimed.length < free || this.inFlight.size >= concurrency;
    return idle ? (this.options.idleMs ?? 500) : 0;
  }
}
