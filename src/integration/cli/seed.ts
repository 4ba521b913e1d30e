import { randomBytes } from 'node:crypto';
import pLimit from 'p-limit';
import { CliFailure, Unreachable, type ApiClient } from './api-client.js';
import { showProgress, type ProgressStream } from './progress.js';

export interface SeedOptions {
  customers: number;
  concurrency: number;
  prefix?: string;
}

export interface SeedResult {
  created: number;
  failed: number;
  seconds: number;
  per_second: number;
}

/** Errors of individual creates reported at the end of a seed. */
const SEED_ERRORS_SHOWN = 5;
/** Creates queued at once: a million-customer seed never holds a million pending calls. */
const SEED_QUEUE = 10_000;

/**
 * Creates `options.customers` customers through the CRM, `options.concurrency` at a time. A failed
 * create is counted and the run goes on, unless the CRM cannot be reached: then no more are tried.
 */
export async function seedCustomers(
  crm: ApiClient,
  options: SeedOptions,
  stderr: ProgressStream,
): Promise<SeedResult & { errors: string[]; unreachable?: Unreachable }> {
  const total = options.customers;
  const prefix = options.prefix ?? randomBytes(4).toString('hex');
  const errors: string[] = [];
  const limit = pLimit(options.concurrency);
  let unreachable: Unreachable | undefined;
  let created = 0;
  let failed = 0;
  const create = async (n: number) => {
    if (unreachable) return;
    const email = `seed-${prefix}-${n}@example.com`;
    try {
      await crm.request('POST', '/customers', { body: { name: `Seed Customer ${n}`, email } });
      created++;
    } catch (error) {
      if (!(error instanceof CliFailure)) throw error;
      failed++;
      if (error instanceof Unreachable) unreachable ??= error;
      if (errors.length < SEED_ERRORS_SHOWN) errors.push(`customer ${n}: ${error.message}`);
    }
  };
  const started = performance.now();
  const stopProgress = showProgress(stderr, total, () => created + failed, 'customers');
  try {
    for (let first = 1; first <= total && !unreachable; first += SEED_QUEUE) {
      const count = Math.min(SEED_QUEUE, total - first + 1);
      await Promise.all(Array.from({ length: count }, (_, i) => limit(() => create(first + i))));
    }
  } finally {
    stopProgress();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    created,
    failed,
    seconds: Math.round(seconds * 1000) / 1000,
    per_second: seconds > 0 ? Math.round((created / seconds) * 10) / 10 : 0,
    errors,
    unreachable,
  };
}
