import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import type { RateLimit } from '../config.js';
import { HttpProblem } from '../errors.js';
import { METRICS_PATH } from './metrics.js';
import { PROBE_PATHS } from './probes.js';
import { pathOf } from './send-problem.js';

/**
 * Probes and scrapes without a token are not rate limited: a limit must not make a busy service
 * look dead. A request that carries a token always counts, so none can be guessed at full speed.
 */
const UNLIMITED_PATHS = new Set([...PROBE_PATHS, METRICS_PATH]);

export interface RequestRateOptions {
  /** Requests allowed per client address and window; no limit when unset or `max` is 0. */
  rateLimit?: RateLimit | undefined;
}

/**
 * Limits each client address to `max` requests per window with @fastify/rate-limit's in-memory
 * store (per process), on every request but those to the probes, `/metrics` and routes configured
 * with `rateLimit: false` that carry no `Authorization`; beyond it, `429` with `Retry-After`.
 * Register it before authentication, so guessing tokens counts too.
 */
export const limitRequestRate = fp<RequestRateOptions>(
  async (app, options) => {
    if (!options.rateLimit || options.rateLimit.max <= 0) return;
    const { max, windowMs } = options.rateLimit;
    // Not global: its per-route hooks would run after the authentication hook.
    await app.register(rateLimit, { global: false });
    const checkRate = app.rateLimit({
      max,
      timeWindow: windowMs,
      errorResponseBuilder: (_request, context) => {
        const seconds = String(Math.max(1, Math.ceil(context.ttl / 1000)));
        return new HttpProblem(
          429,
          'rate_limited',
          `More than ${max} requests in ${windowMs} ms came from your address; wait ${seconds} s (Retry-After) and send this request again.`,
          {},
          { 'retry-after': seconds },
        );
      },
    });
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization === undefined) {
        if (UNLIMITED_PATHS.has(pathOf(request))) return;
        if (request.routeOptions.config?.rateLimit === false) return;
      }
      await checkRate.call(app, request, reply);
    });
  },
  { name: 'limit-request-rate' },
);
