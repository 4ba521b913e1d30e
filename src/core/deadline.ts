/** One outgoing call's time limit, joined with the caller's own signal (e.g. a shutdown's). */
export interface CallDeadline {
  /** Aborts when the time is up (reason: a `TimeoutError`) or when the caller's signal aborts. */
  readonly signal: AbortSignal;
  /** True once the time ran out (rather than the caller's signal aborting). */
  readonly expired: boolean;
  /** Stops the timer and lets go of the caller's signal; call it when the call has settled. */
  clear(): void;
}

/**
 * A signal that aborts after `timeoutMs` or when `outer` does, whichever comes first, for one call.
 * It does what `AbortSignal.any([outer, AbortSignal.timeout(ms)])` does at a fraction of the cost:
 * on Node 20 that pair takes tens of µs per call, and its timer still fires (and dispatches an
 * abort) long after the call answered, where this one is cleared.
 */
export function startDeadline(timeoutMs: number, outer?: AbortSignal): CallDeadline {
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    // The reason AbortSignal.timeout gives, so callers tell a timeout by its name either way.
    controller.abort(new DOMException(`No answer within ${timeoutMs} ms`, 'TimeoutError'));
  }, timeoutMs);
  const followOuter = () => controller.abort(outer?.reason);
  if (outer?.aborted) followOuter();
  else outer?.addEventListener('abort', followOuter, { once: true });
  return {
    signal: controller.signal,
    get expired() {
      return expired;
    },
    clear() {
      clearTimeout(timer);
      outer?.removeEventListener('abort', followOuter);
    },
  };
}
