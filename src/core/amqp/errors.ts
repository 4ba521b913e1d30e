/** The broker cannot be reached right now: keep the event and try again later. */
export class AmqpUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AmqpUnavailableError';
  }
}

/** The broker did not take responsibility for a message (nack, no confirm, unroutable). */
export class AmqpPublishError extends Error {
  constructor(
    message: string,
    readonly messageId: string,
  ) {
    super(message);
    this.name = 'AmqpPublishError';
  }
}
