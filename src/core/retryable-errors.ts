/**
 * How a failed call to another service is to be treated: retried later, or given up on. Whoever
 * makes the call (an HTTP client, a message handler) throws one of these; whoever schedules the
 * work (the delivery worker, the Lambda, the AMQP consumer) decides from it alone.
 */

/** A failure worth retrying: network error, timeout, 5xx, 429, or an answer still in progress. */
export class TransientError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    /** How long the other side asked us to wait (`Retry-After`), in ms, when it said. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'TransientError';
  }
}

/** A failure retrying cannot fix (a 4xx other than 429): the item goes to the dead letters. */
export class NonRetryableError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'NonRetryableError';
  }
}
