/** An epoch-ms time as ISO-8601, or null when there is none (API fields that may be unset). */
export const isoOrNull = (ms: number | null | undefined): string | null =>
  ms == null ? null : new Date(ms).toISOString();
