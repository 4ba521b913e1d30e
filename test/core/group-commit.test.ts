import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/core/group-commit.js';

/** A queue whose "transactions" are recorded, and fail for any batch holding `failing`. */
function recordingQueue(dialect: 'sqlite' | 'postgres', failing?: number) {
  const transactions: number[][] = [];
  const order: string[] = [];
  const queue = new GroupCommit<number, string>({
    dialect,
    maxBatch: 3,
    commit: async (batch) => {
      await Promise.resolve();
      if (failing !== undefined && batch.includes(failing)) {
        throw new Error(`item ${failing} is refused`);
      }
      transactions.push([...batch]);
      return {
        results: batch.map((item) => `done ${item}`),
        afterSettled: () => order.push(`after [${batch.join(',')}]`),
      };
    },
  });
  const submit = (item: number) =>
    queue.submit(item).then((result) => {
      order.push(result);
      return result;
    });
  return { transactions, order, submit };
}

describe('GroupCommit', () => {
  it('on SQLite, items submitted in one turn of the event loop share a transaction, at most maxBatch each, in order', async () => {
    const { transactions, submit } = recordingQueue('sqlite');
    const results = await Promise.all([1, 2, 3, 4, 5].map(submit));
    expect(results).toEqual(['done 1', 'done 2', 'done 3', 'done 4', 'done 5']);
    expect(transactions).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it('on PostgreSQL, the first item commits at once and those submitted meanwhile share the next transaction', async () => {
    const { transactions, submit } = recordingQueue('postgres');
    await Promise.all([1, 2, 3].map(submit));
    expect(transactions).toEqual([[1], [2, 3]]);
  });

  it('a batch that fails is tried again an item at a time: only the failing item gets the error', async () => {
    const { transactions, submit } = recordingQueue('sqlite', 2);
    const outcomes = await Promise.allSettled([1, 2, 3].map(submit));
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    expect((outcomes[1] as PromiseRejectedResult).reason).toEqual(new Error('item 2 is refused'));
    expect(transactions).toEqual([[1], [3]]);
  });

  it('runs afterSettled once per committed batch, never for one that failed', async () => {
    const { order, submit } = recordingQueue('sqlite', 2);
    await Promise.allSettled([1, 2, 3].map(submit));
    expect(order.filter((line) => line.startsWith('after')).sort()).toEqual([
      'after [1]',
      'after [3]',
    ]);
  });

  it('items submitted after the queue emptied start a new batch', async () => {
    const { transactions, submit } = recordingQueue('sqlite');
    await submit(1);
    await submit(2);
    expect(transactions).toEqual([[1], [2]]);
  });
});
