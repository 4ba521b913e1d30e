import type { DialectName } from './db.js';

/** What one transaction made of a batch: each item's result in order, and what to do after. */
export interface CommittedBatch<Result> {
  results: readonly Result[];
  /** Runs once every item of the batch has its result (e.g. waking readers). */
  afterSettled?: () => void;
}

export interface GroupCommitOptions<Item, Result> {
  /**
   * Writes a batch in one transaction and commits it. When it throws, each item of the batch is
   * tried again alone, so that one failing item fails no other.
   */
  commit: (batch: readonly Item[]) => Promise<CommittedBatch<Result>>;
  /**
   * The database the transactions run on. On SQLite (synchronous) the first commit waits for the
   * event loop's check phase, so that requests already read share it.
   */
  dialect: DialectName;
  /** Most items one transaction takes. */
  maxBatch: number;
}

interface Queued<Item, Result> {
  item: Item;
  settle: (outcome: { result: Result } | { error: unknown }) => void;
}

/**
 * Group commit: items submitted while a transaction commits wait and share the next one. One
 * transaction at a time per queue keeps pooled connections free for everything else, and commits
 * items in the order they were submitted. Each submitter gets its own item's result, or the error
 * its item alone would have thrown.
 */
export class GroupCommit<Item, Result> {
  private readonly queued: Queued<Item, Result>[] = [];
  private committing = false;

  constructor(private readonly options: GroupCommitOptions<Item, Result>) {}

  /** Commits `item` with whatever else is queued; answers its result once committed. */
  async submit(item: Item): Promise<Result> {
    const outcome = await new Promise<{ result: Result } | { error: unknown }>((settle) => {
      this.queued.push({ item, settle });
      if (!this.committing) void this.commitQueued();
    });
    if ('error' in outcome) throw outcome.error;
    return outcome.result;
  }

  /** Commits queued items, a batch per transaction, until none is left. */
  private async commitQueued(): Promise<void> {
    this.committing = true;
    try {
      // SQLite runs a whole transaction synchronously, before the event loop reads the next
      // request: without this turn of the loop, requests that arrived together would still each
      // commit alone. Waiting for the loop's check phase lets every request already read submit.
      if (this.options.dialect === 'sqlite') await new Promise((resolve) => setImmediate(resolve));
      while (this.queued.length > 0) {
        await this.commitBatch(this.queued.splice(0, this.options.maxBatch));
      }
    } finally {
      this.committing = false;
    }
  }

  private async commitBatch(batch: readonly Queued<Item, Result>[]): Promise<void> {
    let committed: CommittedBatch<Result>;
    try {
      committed = await this.options.commit(batch.map((queued) => queued.item));
    } catch (error) {
      if (batch.length === 1) batch[0]!.settle({ error });
      else for (const queued of batch) await this.commitBatch([queued]);
      return;
    }
    // Submitters first: an `afterSettled` that throws must not leave a committed batch unanswered.
    batch.forEach((queued, i) => queued.settle({ result: committed.results[i]! }));
    committed.afterSettled?.();
  }
}
