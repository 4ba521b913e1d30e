import { HttpProblem } from './errors.js';

/** An epoch-ms time as ISO-8601, or null when there is none (API fields that may be unset). */
export const isoOrNull = (ms: number | null | undefined): string | null =>
  ms == null ? null : new Date(ms).toISOString();

/**
 * A `date-time` field a client sent, in ms since the epoch (undefined when absent); a 400 naming
 * `field` for one the schema let through but Date cannot place (such as a leap second).
 */
export function epochMsOfField(field: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) {
    throw new HttpProblem(
      400,
      'invalid_request',
      `${field}=${value} is not a time this service can compare; give an ISO 8601 time such as 2026-12-03T09:00:00Z.`,
    );
  }
  return ms;
}
