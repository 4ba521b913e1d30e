import type { Logger } from './logging.js';
import { Wakeup } from './wakeup.js';

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
  private readonly wakeup = new Wakeup();
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly options: WorkLoopOptions<Item>) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Looks for work now rather than at the next idle tick. */
  wake(): void {
    this.wakeup.wake();
  }

  /** Stops claiming and waits for the items in flight. */
  async stop(): Promise<void> {
    this.running = false;
    this.wakeup.wake();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
  }

  private async run(): Promise<void> {
    const { concurrency, logger, name } = this.options;
    const idleMs = this.options.idleMs ?? 500;
    while (this.running) {
      const free = concurrency - this.inFlight.size;
      let claimed: Item[] = [];
      if (free > 0) {
        try {
          claimed = await this.options.claim(free);
        } catch (error) {
          logger.error({ err: error }, `Could not claim due ${name} from the database; retrying`);
        }
      }
      for (const item of claimed) {
        const task: Promise<void> = this.options
          .handle(item)
          .catch((error: unknown) =>
            logger.error({ err: error }, `Unexpected error handling ${name}`),
          )
          .finally(() => {
            this.inFlight.delete(task);
            this.wakeup.wake();
          });
        this.inFlight.add(task);
      }
      // A full batch means more may be due: look again at once, unless every slot is busy.
      if (claimed.length === 0 || claimed.length < free || this.inFlight.size >= concurrency) {
        await this.wakeup.sleep(idleMs);
      }
    }
  }
}
