import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logging.js';
import { WorkLoop } from '../../src/core/work-loop.js';
import { waitUntil } from '../support/platform.js';

let loop: WorkLoop<string> | undefined;
afterEach(async () => {
  await loop?.stop(0);
  loop = undefined;
});

/**
 * A loop over a queue of named items, with a long idle wait so that only a wake or a freed slot
 * can make it look again within a test. Items finish when `finish` is called.
 */
function loopOver(queue: string[]) {
  const looks: number[] = [];
  const finishers = new Map<string, () => void>();
  const handled: string[] = [];
  loop = new WorkLoop<string>({
    name: 'items',
    concurrency: 2,
    claim: async (limit) => {
      looks.push(limit);
      return queue.splice(0, limit);
    },
    handle: (item, abandoned) =>
      new Promise<void>((resolve) => {
        handled.push(item);
        finishers.set(item, resolve);
        abandoned.addEventListener('abort', () => resolve());
      }),
    logger: createLogger({ service: 'test', level: 'silent' }),
    idleMs: 60_000,
  });
  const finish = (item: string) => finishers.get(item)!();
  return { looks, handled, finish, loop };
}

const turn = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('WorkLoop', () => {
  it('looks again when a slot frees up while more may be due: its last look came back full', async () => {
    const queue = ['a', 'b', 'c'];
    const { looks, handled, finish, loop: started } = loopOver(queue);
    started.start();
    await waitUntil(() => handled.length === 2, 2_000, 'two items in flight');
    expect(looks).toEqual([2]);
    finish('a');
    await waitUntil(() => handled.length === 3, 2_000, 'the third item');
    expect(looks).toEqual([2, 1]);
  });

  it('after a look that found all there was, a finished item makes no new look; a wake does', async () => {
    const queue = ['a'];
    const { looks, handled, finish, loop: started } = loopOver(queue);
    started.start();
    await waitUntil(() => handled.length === 1, 2_000, 'the item in flight');
    expect(looks).toEqual([2]);
    finish('a');
    await turn();
    expect(looks).toEqual([2]);
    queue.push('b');
    started.wake();
    await waitUntil(() => handled.length === 2, 2_000, 'the woken item');
    expect(looks).toEqual([2, 2]);
  });

  it('a wake while every slot is busy is kept: the next freed slot looks', async () => {
    const queue = ['a', 'b'];
    const { looks, handled, finish, loop: started } = loopOver(queue);
    started.start();
    await waitUntil(() => handled.length === 2, 2_000, 'two items in flight');
    queue.push('c');
    started.wake();
    await turn();
    expect(looks).toEqual([2]);
    finish('b');
    await waitUntil(() => handled.length === 3, 2_000, 'the item recorded while busy');
    expect(handled).toEqual(['a', 'b', 'c']);
  });
});
