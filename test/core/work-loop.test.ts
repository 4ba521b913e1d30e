import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logging.js';
import { WorkLoop } from '../../src/core/work-loop.js';

/** A loop of two slots whose items each end when the test says so. */
function twoSlotLoop() {
  const finishers: (() => void)[] = [];
  const loop = new WorkLoop<number>({
    name: 'items',
    concurrency: 2,
    claim: async () => [],
    handle: () => new Promise<void>((resolve) => finishers.push(resolve)),
    logger: createLogger({ service: 'test', level: 'silent' }),
    idleMs: 60_000,
  });
  return { loop, finishers };
}

const settledWithin = async (promise: Promise<void>, ms: number) =>
  Promise.race([
    promise.then(() => true),
    new Promise<false>((resolve) => setTimeout(() => resolve(false), ms)),
  ]);

let stop: (() => Promise<void>) | undefined;
afterEach(async () => {
  await stop?.();
  stop = undefined;
});

describe('waiting for free slots', () => {
  it('answers at once while enough slots are free, and once a finished item frees them', async () => {
    const { loop, finishers } = twoSlotLoop();
    stop = async () => {
      finishers.forEach((finish) => finish());
      await loop.stop();
    };
    const never = new AbortController().signal;
    expect(await settledWithin(loop.waitForFreeSlots(2, 60_000, never), 50)).toBe(true);

    expect(loop.reserve(3)).toBe(2);
    loop.handleReserved(1);
    loop.handleReserved(2);
    expect(loop.freeSlots).toBe(0);
    const one = loop.waitForFreeSlots(1, 60_000, never);
    const two = loop.waitForFreeSlots(2, 60_000, never);
    expect(await settledWithin(one, 50)).toBe(false);
    finishers[0]!();
    expect(await settledWithin(one, 1_000)).toBe(true);
    // One slot free is not the two the second waiter asked for.
    expect(await settledWithin(two, 50)).toBe(false);
    finishers[1]!();
    expect(await settledWithin(two, 1_000)).toBe(true);
  });

  it('gives up after its longest wait, or when its signal aborts', async () => {
    const { loop, finishers } = twoSlotLoop();
    stop = async () => {
      finishers.forEach((finish) => finish());
      await loop.stop();
    };
    expect(loop.reserve(2)).toBe(2);
    loop.handleReserved(1);
    loop.handleReserved(2);
    const never = new AbortController().signal;
    expect(await settledWithin(loop.waitForFreeSlots(1, 100, never), 2_000)).toBe(true);
    const reader = new AbortController();
    const waiting = loop.waitForFreeSlots(1, 60_000, reader.signal);
    expect(await settledWithin(waiting, 50)).toBe(false);
    reader.abort();
    expect(await settledWithin(waiting, 1_000)).toBe(true);
  });

  it('counts reserved slots as taken until an item starts in them or they are given back, and lets every waiter go when stopped', async () => {
    const { loop, finishers } = twoSlotLoop();
    stop = async () => {
      finishers.forEach((finish) => finish());
      await loop.stop();
    };
    const never = new AbortController().signal;
    expect(loop.reserve(1)).toBe(1);
    expect(loop.freeSlots).toBe(1);
    expect(loop.reserve(5)).toBe(1);
    expect(loop.reserve(1)).toBe(0);
    // More than the loop's concurrency is waited for as all of it.
    const all = loop.waitForFreeSlots(10, 60_000, never);
    loop.handleReserved(1);
    loop.unreserve(1);
    expect(loop.freeSlots).toBe(1);
    expect(await settledWithin(all, 50)).toBe(false);
    finishers[0]!();
    expect(await settledWithin(all, 1_000)).toBe(true);

    loop.reserve(2);
    const stopped = loop.waitForFreeSlots(1, 60_000, never);
    const stopping = loop.stop();
    expect(await settledWithin(stopped, 1_000)).toBe(true);
    loop.unreserve(2);
    await stopping;
    stop = undefined;
  });
});
