/**
 * The shape of bench/results.json: what `npm run bench` measured, on which commit and machine. The
 * table the bench prints and docs/figures/bench.md are both rendered from it (bench/figures.ts).
 */
import type { CreateFigures } from './creates.js';
import type { StartUpFigures } from './start-up.js';
import type { UpdateLagFigures } from './update-lag.js';

/**
 * User + system CPU milliseconds per customer delivered, by service process (`crm`, `inventory`,
 * and `integration` or `baseline`), over one scenario's window; `total` is their sum.
 */
export type CpuPerCustomer = Record<string, number | null> & { total: number | null };

/** The figures of one push_lag mode. */
export interface LagFigures {
  /** The sync mode, then `, one process` when the three services shared one (`npm start`). */
  mode: string;
  /** Customers created in the measured window (after the warm-up). */
  customers: number;
  failed: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /** The same figures for the warm-up, when the services had just started. */
  warmup: { customers: number; p50_ms: number; p99_ms: number; max_ms: number };
  /** CPU from the end of the warm-up until every customer was delivered. */
  cpu_ms_per_customer: CpuPerCustomer | null;
  /** Customers delivered in that window. */
  cpu_customers: number;
  /**
   * Write calls Inventory answered in that window per customer delivered (1 = no batching); absent
   * from results before it existed.
   */
  inventory_calls_per_customer?: number | null;
  /** Hybrid mode only: every measured customer changed once, PATCH answered → Inventory updated. */
  update_lag?: UpdateLagFigures;
  /** The services' memory at the end of the run; absent from results before it was read. */
  memory?: ResidentMemory;
}

/** Resident memory of the service processes, by process name, in MB. */
export interface ResidentMemory {
  rss_mb: Record<string, number | null>;
  rss_mb_total: number | null;
  /** The file-backed part of each rss_mb (the node binary, shared between the processes). */
  rss_file_mb: Record<string, number | null>;
  /** rss_mb_total with the shared file-backed pages counted once (the largest rss_file_mb). */
  resident_together_mb: number | null;
}

/** backlog, empty_poll and rss at one size, for the platform or the baseline. */
export interface BacklogRun extends ResidentMemory {
  size: number;
  backlog_per_s: number | null;
  empty_poll_ms: number | null;
  empty_poll_calls: number;
  /** CPU from the consumer's readiness until the backlog was delivered. */
  cpu_ms_per_customer: CpuPerCustomer | null;
  /** Customers delivered in that window. */
  cpu_customers: number;
  /**
   * The baseline's drain when it was measured over a window (full runs): its seconds and the
   * customers delivered in it; backlog_per_s and the CPU are then projected for the whole size.
   */
  measured_window?: { seconds: number; delivered: number };
  /** The platform's audit of the delivered backlog; null for the baseline. */
  audit?: AuditRun | null;
}

/** One audit after a backlog run (platform only). */
export interface AuditRun {
  customers: number;
  seconds: number;
  per_s: number;
  /** Should be 0: every customer was delivered. */
  drift_total: number;
  /** The integration process's resident memory before the audit, and its peak during it. */
  integration_rss_before_mb: number | null;
  integration_rss_peak_mb: number;
}

export type System = 'platform' | 'baseline';

export interface BenchResults {
  generated_at: string;
  /** `git rev-parse --short HEAD`, with `-dirty` when the tree had changes; null outside git. */
  commit: string | null;
  quick: boolean;
  /** The services' database (absent from results before `--postgres` existed: SQLite). */
  database?: 'sqlite' | 'postgres';
  machine: {
    cpus: number;
    cpu_model: string;
    memory_gb: number;
    node: string;
    platform: string;
  };
  sizes: {
    push_rate: number;
    push_seconds: number;
    push_warmup_seconds: number;
    backlog: number;
    empty_poll_small: number;
    empty_poll_large: number;
    /** How many times start_up runs `npm start` (absent from results before it existed). */
    start_up_runs?: number;
    /** create_throughput's creates: warm-up, one at a time, 16 in flight (absent before it existed). */
    create_warmup?: number;
    create_sequential?: number;
    create_concurrent?: number;
  };
  notes: string[];
  platform: {
    push_lag_p50_ms: number | null;
    push_lag_p99_ms: number | null;
    push_lag_max_ms: number | null;
    backlog_per_s: number | null;
    empty_poll_ms_1k: number | null;
    empty_poll_ms_1m: number | null;
    rss_mb_total_1m: number | null;
    resident_together_mb_1m: number | null;
    /** The default mode's (hybrid). */
    cpu_ms_per_customer_push: CpuPerCustomer | null;
    /** At sizes.backlog. */
    cpu_ms_per_customer_backlog: CpuPerCustomer | null;
    /** The audit at sizes.empty_poll_large (1,000,000 in a full run). */
    audit_seconds_1m?: number | null;
    audit_rss_peak_mb_1m?: number | null;
    audit_rss_before_mb_1m?: number | null;
    /** `npm start` on a built tree until all three `/ready`: the median, ms. */
    start_up_ms?: number | null;
    /** `POST /customers` per second with 16 in flight, and its p99 latency. */
    creates_per_s?: number | null;
    creates_p99_ms?: number | null;
  };
  baseline: {
    backlog_per_s: number | null;
    empty_poll_ms_1k: number | null;
    empty_poll_ms_1m: number | null;
    rss_mb_total_1m: number | null;
    resident_together_mb_1m: number | null;
    cpu_ms_per_customer_backlog: CpuPerCustomer | null;
  };
  push_lag: LagFigures[];
  runs: Record<System, BacklogRun[]>;
  /**
   * The platform's largest backlog again with the three services in one process (`npm start`),
   * under the one name `platform`, without the audit; absent from results before it was run.
   */
  one_process_backlog?: BacklogRun | null;
  start_up?: StartUpFigures | null;
  create_throughput?: CreateFigures | null;
  duration_s: number;
}

/** The file a full run on `database` writes in bench/: results.json for SQLite, results-postgres.json. */
export function resultsFile(database: 'sqlite' | 'postgres', extension: 'json' | 'svg'): string {
  return database === 'sqlite' ? `results.${extension}` : `results-postgres.${extension}`;
}
