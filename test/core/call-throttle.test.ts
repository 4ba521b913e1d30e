import { describe, expect, it } from 'vitest';
import { CallThrottle } from '../../src/core/call-throttle.js';

/** Blocks the event loop for `ms`, as a long synchronous task or a GC pause would. */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Busy: no timer can fire meanwhile.
  }
}

describe('the call throttle', () => {
  it('starts calls an interval apart, also when the event loop stalled while they waited', async () => {
    const throttle = new CallThrottle(20); // one call per 50 ms
    await throttle.take();
    const startedAt = [performance.now()];
    const calls = Array.from({ length: 5 }, () =>
      throttle.take().then(() => startedAt.push(performance.now())),
    );
    // Every waiter's timer is due by the end of this stall: none may start in a burst after it.
    stall(400);
    await Promise.all(calls);
    const gaps = startedAt.slice(1).map((at, i) => at - startedAt[i]!);
    // Timers may fire up to a millisecond early on Node's clock.
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(49);
  });

  it('lets the first call start at once, and stops a waiting one when its signal aborts', async () => {
    const throttle = new CallThrottle(1);
    // At once: before the event loop even turns, with no timer involved.
    const order: string[] = [];
    setImmediate(() => order.push('loop turned'));
    await throttle.take();
    order.push('first call may start');
    expect(order).toEqual(['first call may start']);
    const controller = new AbortController();
    const waiting = throttle.take(controller.signal);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
  });
});
