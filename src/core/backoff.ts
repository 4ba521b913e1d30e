/** How retries are spaced and when a transient failure gives up. */
export interface RetryPolicy {
  /** Calls before a transient failure may be dead-lettered. */
  maxAttempts: number;
  /** ... and the least time it must have been failing by then, in ms. */
  deadLetterAfterMs: number;
  /** Ceiling of the first delay, doubled per attempt, in ms. */
  baseMs: number;
  /** Largest delay, in ms. */
  maxDelayMs: number;
}

/**
 * Delay before retry number `attempt` (1 = the first retry): exponential backoff with full jitter,
 * a uniform pick in [0, min(maxDelay, base·2^(attempt−1))), so that many clients failing together
 * spread out instead of retrying in waves. A server's `Retry-After` is a floor.
 */
export function retryDelayMs(
  attempt: number,
  policy: Pick<RetryPolicy, 'baseMs' | 'maxDelayMs'>,
  retryAfterMs = 0,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseMs * 2 ** Math.min(attempt - 1, 40));
  return Math.max(retryAfterMs, Math.floor(random() * ceiling));
}

/**
 * The total wait of the retries before attempt `attempts` (the waits of retries 1 to attempts−1):
 * at most `longestMs`, `meanMs` on average (full jitter picks each wait uniformly below its
 * ceiling). The time the calls themselves take comes on top.
 */
export function retryWindowMs(
  attempts: number,
  policy: Pick<RetryPolicy, 'baseMs' | 'maxDelayMs'>,
): { longestMs: number; meanMs: number } {
  let longestMs = 0;
  for (let retry = 1; retry < attempts; retry += 1) {
    longestMs += Math.min(policy.maxDelayMs, policy.baseMs * 2 ** Math.min(retry - 1, 40));
  }
  return { longestMs, meanMs: longestMs / 2 };
}

/**
 * A transient failure is given up (dead-lettered) only once it has used `maxAttempts` calls and
 * has been failing for `deadLetterAfterMs`: an outage shorter than that never loses an item to
 * the dead letters, however the jitter falls.
 */
export function shouldGiveUp(
  attempts: number,
  failingSinceMs: number,
  nowMs: number,
  policy: Pick<RetryPolicy, 'maxAttempts' | 'deadLetterAfterMs'>,
): boolean {
  return attempts >= policy.maxAttempts && nowMs - failingSinceMs >= policy.deadLetterAfterMs;
}

/** Parses `Retry-After` (seconds or an HTTP date) into ms from `nowMs`; undefined if absent or bad. */
export function parseRetryAfter(
  value: string | null | undefined,
  nowMs: number,
): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Math.min(Number(trimmed), 86_400) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.min(date - nowMs, 86_400_000));
}
