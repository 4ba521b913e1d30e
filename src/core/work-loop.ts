import type { Logger } from './logging.js';
import { RepeatingTask, type NextStep } from './repeating-task.js';

export interface WorkLoopOptions<Item> {
  /** Short name for logs, e.g. `deliveries`. */
  name: string;
  /** Items handled at once. */
  concurrency: number;
  /** Claims up to `limit` items that are due; each is then this process's to handle. */
  claim: (limit: number) => Promise<Item[]>;
  /**
   * Handles one claimed item; must not throw (record failures as data). When `abandoned` aborts
   * (the shutdown deadline came), it stops its call, records nothing of it and releases the item
   * for the next instance.
   */
  handle: (item: Item, abandoned: AbortSignal) => Promise<void>;
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
  private readonly abandon = new AbortController();
  /** Who waits for free slots (`waitForFreeSlots`), and for how many. */
  private readonly slotWaiters = new Set<{ slots: number; done: () => void }>();
  /** Slots held for items not started yet: claimed by a look in progress, or by `reserve`. */
  private reserved = 0;

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
    return this.options.concurrency - this.inFlight.size - this.reserved;
  }

  /**
   * Holds up to `wanted` free slots for items claimed elsewhere (e.g. written claimed as they are
   * recorded), so that neither the loop's looks nor another caller fills them meanwhile; answers
   * how many it holds. Start each item with `handleReserved`, and give back the rest with
   * `unreserve`.
   */
  reserve(wanted: number): number {
    const slots = Math.max(0, Math.min(wanted, this.freeSlots));
    this.reserved += slots;
    return slots;
  }

  /** Handles an item claimed elsewhere, in a slot `reserve` held for it. */
  handleReserved(item: Item): void {
    this.reserved -= 1;
    this.startHandling(item);
  }

  /** Gives back `slots` slots `reserve` held and no item took. */
  unreserve(slots: number): void {
    if (slots <= 0) return;
    this.reserved -= slots;
    this.slotsFreed();
  }

  /**
   * Resolves once `slots` items could start without going over `concurrency`, after `maxWaitMs`,
   * or when `signal` aborts, whichever comes first.
   */
  waitForFreeSlots(wanted: number, maxWaitMs: number, signal: AbortSignal): Promise<void> {
    const slots = Math.min(wanted, this.options.concurrency);
    if (this.freeSlots >= slots || maxWaitMs <= 0 || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.slotWaiters.delete(waiter);
        resolve();
      };
      const waiter = { slots, done };
      const timer = setTimeout(done, maxWaitMs);
      signal.addEventListener('abort', done);
      this.slotWaiters.add(waiter);
    });
  }

  /**
   * Handles an item claimed elsewhere (e.g. as it was recorded) at once, beside the claimed ones;
   * callers check `freeSlots` first and give back what a look claimed meanwhile, so `concurrency`
   * is passed at most briefly (`reserve` holds the slots instead).
   */
  handleNow(item: Item): void {
    this.startHandling(item);
  }

  /**
   * Stops claiming and waits for the items in flight; those still in flight after `abandonAfterMs`
   * (default: wait for them all) are abandoned: their handlers stop and release them.
   */
  async stop(abandonAfterMs?: number): Promise<void> {
    for (const waiter of this.slotWaiters) waiter.done();
    await this.task.stop();
    const settled = Promise.allSettled([...this.inFlight]).then(() => true);
    if (abandonAfterMs === undefined) return void (await settled);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, abandonAfterMs));
    });
    const finished = await Promise.race([settled, deadline]);
    clearTimeout(timer);
    if (finished) return;
    this.options.logger.warn(
      `${this.inFlight.size} batch(es) of ${this.options.name} still in flight at the shutdown deadline: released for the next instance`,
    );
    this.abandon.abort();
    await settled;
  }

  private startHandling(item: Item): void {
    const { logger, name } = this.options;
    const handling: Promise<void> = this.options
      .handle(item, this.abandon.signal)
      .catch((error: unknown) => logger.error({ err: error }, `Unexpected error handling ${name}`))
      .finally(() => {
        this.inFlight.delete(handling);
        this.slotsFreed();
      });
    this.inFlight.add(handling);
  }

  /** Lets go whoever waits for the slots now free, and looks for due work. */
  private slotsFreed(): void {
    this.letWaitersGo();
    this.task.wake();
  }

  private letWaitersGo(): void {
    for (const waiter of this.slotWaiters) if (this.freeSlots >= waiter.slots) waiter.done();
  }

  private async step(): Promise<NextStep> {
    const { concurrency, logger, name } = this.options;
    // The slots a look claims for are held until it answers, so a reservation cannot take them.
    const free = this.reserve(concurrency);
    let claimed: Item[] = [];
    if (free > 0) {
      try {
        claimed = await this.options.claim(free);
      } catch (error) {
        logger.error({ err: error }, `Could not claim due ${name} from the database; retrying`);
      }
    }
    // The look's items take the slots it held; those it found nothing for are free again (the
    // loop itself idles, not woken).
    this.reserved -= free;
    for (const item of claimed) this.startHandling(item);
    this.letWaitersGo();
    // A full batch means more may be due: look again at once, unless every slot is busy.
    const idle = claimed.length === 0 || claimed.length < free || this.inFlight.size >= concurrency;
    return idle ? (this.options.idleMs ?? 500) : 0;
  }
}
