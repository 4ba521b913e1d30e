import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Spaces calls to one destination at most `perSecond` a second, evenly (no bursts), in this
 * process: `take()` resolves when the next call may start, or rejects when `signal` aborts.
 */
export class CallThrottle {
  /** When the next call may start, on `performance.now()`'s clock. */
  private nextAt = 0;
  private readonly intervalMs: number;

  constructor(perSecond: number) {
    this.intervalMs = 1000 / perSecond;
  }

  async take(signal?: AbortSignal): Promise<void> {
    // A turn is taken when it is used, not reserved ahead: after the event loop stalls, waiters
    // whose timers all fire at once still start an interval apart, not in a burst.
    for (;;) {
      signal?.throwIfAborted();
      const now = performance.now();
      if (now >= this.nextAt) {
        this.nextAt = now + this.intervalMs;
        return;
      }
      await sleep(this.nextAt - now, undefined, { signal });
    }
  }
}
