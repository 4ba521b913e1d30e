/**
 * What the battery's scenarios share (test/chaos/*.test.ts): the seed, the database they run on,
 * the drain bound, and how each reports its counts and reads the services' metrics.
 */
import { postgresUrlFor } from './databases.js';
import { scaled, type ChaosPlatform, type SyncMode } from './chaos.js';
import { reportScenario, type Counts, type ScenarioReport } from './scenario-report.js';

export const SEED = Number(process.env.CHAOS_SEED ?? 20261127);
export const DATABASE = postgresUrlFor('integration') ? 'postgres' : 'sqlite';
/** Wait for everything to be delivered once faults stop; beyond it the scenario fails. */
export const DRAIN_BOUND_MS = scaled(30_000, 120_000);

export function report(
  scenario: string,
  mode: SyncMode,
  counts: Counts,
  startedAt: number,
  details: ScenarioReport['details'],
): void {
  reportScenario({
    scenario,
    mode,
    database: DATABASE,
    seed: SEED,
    seconds: (performance.now() - startedAt) / 1000,
    ...counts,
    details,
  });
}

/** A number from a service's Prometheus text, summed over the series matching `labels`. */
export async function metric(url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(labels))
      total += Number(line.split(' ').pop());
  }
  return total;
}

/** Inventory's answers to creates that found the customer's request already there (no key saved it). */
export const duplicateCreates = (p: ChaosPlatform) =>
  metric(p.inventory.url, 'inventory_create_responses_total', 'outcome="duplicate"');

/** `reason×count` pairs, e.g. `500 internal_error×3 ECONNRESET×1`, or `none`. */
export const describeFailures = (failures: Record<string, number>): string =>
  Object.entries(failures)
    .map(([reason, count]) => `${reason.replaceAll(' ', '_')}×${count}`)
    .join(' ') || 'none';

/** The drain time for the report: ms, or `over bound` when it never drained. */
export const drainFigure = (drainMs: number | null): number | string =>
  drainMs === null ? 'over bound' : Math.round(drainMs);

export const exactlyOnce = (created: number): Partial<Counts> => ({
  created,
  delivered: created,
  duplicates: 0,
  missing: 0,
  strays: 0,
});
