/**
 * The bench's command line (`npm run bench -- --quick --only=… --modes=…`): the sizes of a quick
 * or full run, and which scenarios, modes and sizes a partial run keeps.
 */
import os from 'node:os';
import path from 'node:path';

export const quick = process.argv.includes('--quick');
/**
 * `--only=backlog,push_lag,create_throughput,start_up`: run just those scenarios (empty_poll and rss come with
 * backlog).
 */
export const only = process.argv
  .find((arg) => arg.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
export const selected = (scenario: 'push_lag' | 'create_throughput' | 'backlog' | 'start_up') =>
  !only || only.includes(scenario);
/**
 * `--postgres`: every scenario on PostgreSQL (fresh schemas per run in BENCH_POSTGRES_URL's
 * database, dropped afterwards) instead of SQLite files.
 */
export const postgres = process.argv.includes('--postgres');
/** The database `--postgres` uses; default the local server's `test` database. */
export const POSTGRES_URL =
  process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** `--platform-only`: skip the baseline (when profiling or tuning the platform). */
export const platformOnly = process.argv.includes('--platform-only');
/** `--profile`: every service writes a V8 CPU profile here, summarised at the end. */
export const profileDir = process.argv.includes('--profile')
  ? path.join(os.tmpdir(), `mip-bench-profiles-${Date.now()}`)
  : undefined;
if (profileDir) {
  process.env.BENCH_PROFILE_DIR = profileDir;
  process.stdout.write(`CPU profiles of every service go to ${profileDir}\n`);
}
export const SIZES = quick
  ? {
      push_rate: 200,
      push_seconds: 5,
      push_warmup_seconds: 2,
      backlog: 5_000,
      empty_poll_small: 1_000,
      empty_poll_large: 10_000,
      start_up_runs: 3,
      create_warmup: 200,
      create_sequential: 200,
      create_concurrent: 2_000,
    }
  : {
      push_rate: 500,
      push_seconds: 20,
      push_warmup_seconds: 10,
      backlog: 100_000,
      empty_poll_small: 1_000,
      empty_poll_large: 1_000_000,
      start_up_runs: 5,
      create_warmup: 1_000,
      create_sequential: 1_000,
      create_concurrent: 10_000,
    };
// On PostgreSQL the large size is 100,000 (its target's size), so the run fits its budget too.
if (postgres && !quick) SIZES.empty_poll_large = 100_000;
/** `--backlog=N`: the backlog scenario's size instead of the mode's (e.g. to profile one size). */
const backlogArg = process.argv.find((arg) => arg.startsWith('--backlog='));
if (backlogArg) SIZES.backlog = Number(backlogArg.slice('--backlog='.length));
/**
 * `--modes=webhook,amqp`: run push_lag in just these modes (a partial run); `hybrid-one-process`
 * is hybrid with the three services in one process.
 */
export const modesArg = process.argv
  .find((arg) => arg.startsWith('--modes='))
  ?.slice('--modes='.length)
  .split(',');
/** `--rate=N`: push_lag's customers per second instead of the mode's (a partial run). */
export const rateArg = process.argv.find((arg) => arg.startsWith('--rate='));
if (rateArg) SIZES.push_rate = Number(rateArg.slice('--rate='.length));
/** `--sizes=1000,100000`: run backlog/empty_poll/rss at just these sizes (a partial run). */
export const sizesArg = process.argv
  .find((arg) => arg.startsWith('--sizes='))
  ?.slice('--sizes='.length)
  .split(',')
  .map(Number);

/** Longest wait for one run's deliveries; a run that takes longer is reported as not finished. */
export const DELIVERY_TIMEOUT_MS = quick ? 60_000 : 60 * 60_000;
/** Longest wait, after the last create, for push_lag's deliveries to arrive. */
export const PUSH_DRAIN_TIMEOUT_MS = 60_000;
export const EMPTY_POLL_CALLS = 200;
/**
 * How long the baseline's drain is followed before the rest is projected at its flat rate (so the
 * full bench fits its 15 minutes: the baseline's 1,000,000 would take 23 alone).
 */
export const BASELINE_WINDOW_MS = quick ? DELIVERY_TIMEOUT_MS : 45_000;
/** Baseline polls list every customer, so at 1,000,000 they are slow: fewer calls, bounded time. */
export const BASELINE_EMPTY_POLL_BUDGET_MS = quick ? 2_000 : 30_000;
