import CircuitBreaker from 'opossum';
import type { Logger } from '../core/logging.js';
import { NonRetryableError } from '../core/retryable-errors.js';

export type CircuitState = 'closed' | 'half_open' | 'open';

export interface CircuitOptions {
  /** Destination name for logs and metrics, e.g. `inventory`. */
  name: string;
  /** Time the circuit stays open before letting a probe call through, in ms. */
  resetMs: number;
  logger: Logger;
  onStateChange?: (state: CircuitState) => void;
}

/**
 * Wraps calls to one destination in a circuit breaker (opossum): when half of the recent calls
 * fail (at least 5 in 10 s), it opens and refuses calls without making them, then lets a probe
 * through after `resetMs` and closes again when it succeeds. Permanent answers (4xx) show the
 * destination is up, so they do not count as failures.
 */
export function createCircuit<Args extends unknown[], Result>(
  action: (...args: Args) => Promise<Result>,
  options: CircuitOptions,
) {
  const breaker = new CircuitBreaker(action, {
    name: options.name,
    timeout: false, // the HTTP client has its own timeout
    resetTimeout: options.resetMs,
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    rollingCountTimeout: 10_000,
    errorFilter: (error: unknown) => error instanceof NonRetryableError,
  });
  const report = (state: CircuitState, message: string) => {
    options.onStateChange?.(state);
    options.logger[state === 'open' ? 'warn' : 'info']({ destination: options.name }, message);
  };
  breaker.on('open', () =>
    report('open', `Circuit to ${options.name} opened: calls paused for ${options.resetMs} ms`),
  );
  breaker.on('halfOpen', () =>
    report('half_open', `Circuit to ${options.name} half-open: probing with one call`),
  );
  breaker.on('close', () => report('closed', `Circuit to ${options.name} closed: calls resume`));
  options.onStateChange?.('closed');

  return {
    fire: (...args: Args): Promise<Result> => breaker.fire(...args),
    state: (): CircuitState =>
      breaker.opened ? 'open' : breaker.halfOpen ? 'half_open' : 'closed',
    shutdown: () => breaker.shutdown(),
  };
}

/** True when a call was refused by an open circuit, i.e. never made. */
export function isCircuitOpenError(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === 'EOPENBREAKER';
}
