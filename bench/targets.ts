/**
 * The speed targets a full run is held to (issue 18), per database, each read from results.json:
 * docs/figures/bench.md shows them with the measured figure and whether it is met.
 */
import type { BenchResults } from './results.js';

export interface Target {
  measure: string;
  /** The target as written in the docs, e.g. "≤ 1.0". */
  target: string;
  measured: (results: BenchResults) => number | null | undefined;
  met: (value: number) => boolean;
}

const atMost = (limit: number) => ({
  target: `≤ ${limit}`,
  met: (value: number) => value <= limit,
});
const atLeast = (floor: number) => ({
  target: `≥ ${floor.toLocaleString('en')}`,
  met: (value: number) => value >= floor,
});

const lag = (mode: string, which: 'p50_ms' | 'p99_ms') => (results: BenchResults) =>
  results.push_lag.find((run) => run.mode === mode)?.[which];

/** Push lag p50 and p99 in every mode, against the database's bounds. */
function lagTargets(p50: number, p99: number): Target[] {
  return ['webhook', 'hybrid', 'amqp'].flatMap((mode) => [
    { measure: `push lag p50, ${mode} (ms)`, ...atMost(p50), measured: lag(mode, 'p50_ms') },
    { measure: `push lag p99, ${mode} (ms)`, ...atMost(p99), measured: lag(mode, 'p99_ms') },
  ]);
}

const backlogAt = (size: number) => (results: BenchResults) =>
  results.runs.platform.find((run) => run.size === size)?.backlog_per_s;

export const TARGETS: Record<'sqlite' | 'postgres', Target[]> = {
  sqlite: [
    {
      measure: 'CPU per customer, push hybrid, all services (ms)',
      ...atMost(1.0),
      measured: (results) => results.platform.cpu_ms_per_customer_push?.total,
    },
    ...lagTargets(5, 25),
    {
      measure: 'POST /customers, 16 in flight (/s)',
      ...atLeast(4000),
      measured: (results) => results.platform.creates_per_s,
    },
    {
      measure: 'POST /customers, 16 in flight, p99 (ms)',
      ...atMost(10),
      measured: (results) => results.platform.creates_p99_ms,
    },
    { measure: 'backlog at 1,000,000 (customers/s)', ...atLeast(30_000), measured: backlogAt(1e6) },
    {
      measure: 'resident memory after the 1,000,000 run, all services (MB)',
      ...atMost(250),
      measured: (results) => results.platform.rss_mb_total_1m,
    },
    {
      measure: 'npm start → all three /ready (ms)',
      ...atMost(1000),
      measured: (results) => results.platform.start_up_ms,
    },
    { measure: 'full bench wall time (s)', ...atMost(900), measured: (r) => r.duration_s },
  ],
  postgres: [
    {
      measure: 'CPU per customer, push hybrid, our processes (ms)',
      ...atMost(1.5),
      measured: (results) => results.platform.cpu_ms_per_customer_push?.total,
    },
    ...lagTargets(10, 50),
    {
      measure: 'POST /customers, 16 in flight (/s)',
      ...atLeast(2000),
      measured: (results) => results.platform.creates_per_s,
    },
    { measure: 'backlog at 100,000 (customers/s)', ...atLeast(10_000), measured: backlogAt(1e5) },
  ],
};

/** Each target of `results`' database: the measured value (null when not run) and whether it is met. */
export function checkTargets(results: BenchResults) {
  return TARGETS[results.database ?? 'sqlite'].map((target) => {
    const value = target.measured(results) ?? null;
    return { ...target, value, met: value === null ? null : target.met(value) };
  });
}
