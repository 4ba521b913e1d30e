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
    const now = performance.now();
    const at = Math.max(now, this.nextAt);
    this.nextAt = at + this.intervalMs;
    if (at > now) await sleep(at - now, undefined, { signal });
  }
}
