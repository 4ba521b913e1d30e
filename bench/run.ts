/**
 * `npm run bench [-- --quick]`: runs the real services (embedded SQLite, one temporary DATA_DIR per
 * run, free ports) through the scenarios of issue 7 and writes bench/results.json and
 * bench/results.svg; a full run also writes docs/figures/bench.md. See docs/benchmarks.md for what
 * each scenario measures.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { backlogRun } from './backlog.js';
import { renderChart, type LagSeries, type ThroughputBar } from './chart.js';
import { createThroughput } from './creates.js';
import { formatTable, savedFullRuns, writeFiguresMarkdown } from './figures.js';
import { round } from './numbers.js';
import {
  modesArg,
  only,
  BASELINE_WINDOW_MS,
  platformOnly,
  postgres,
  profileDir,
  quick,
  rateArg,
  selected,
  SIZES,
  sizesArg,
} from './options.js';
import { say } from './output.js';
import { printProfileSummaries } from './profile-summary.js';
import { pushLag, type LagResult } from './push-lag.js';
import { startUp } from './start-up.js';
import { resultsFile, type BacklogRun, type BenchResults, type System } from './results.js';
import { DIST, serviceNames } from './services.js';

const BENCH_DIR = fileURLToPath(new URL('../../bench/', import.meta.url));
/** Where a quick run writes its results.json and results.svg (git ignores it). */
const QUICK_DIR = fileURLToPath(new URL('../../test-artifacts/bench-quick/', import.meta.url));
/** The figures the docs show: written by full runs only, so quick runs (CI) leave it as it is. */
const FIGURES_FILE = fileURLToPath(new URL('../../docs/figures/bench.md', import.meta.url));

/** `git rev-parse --short HEAD`, with `-dirty` when the tree has changes; null outside git. */
function currentCommit(): string | null {
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: BENCH_DIR,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  try {
    const commit = git('rev-parse', '--short', 'HEAD').trim();
    return git('status', '--porcelain').trim() === '' ? commit : `${commit}-dirty`;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const benchStarted = performance.now();
  // Read before the run writes its results into the tree.
  const commit = currentCommit();
  const machine = {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    memory_gb: round(os.totalmem() / 1024 ** 3, 1),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
  say(
    `Bench (${quick ? 'quick' : 'full'}) on ${machine.cpus} CPUs, ${machine.memory_gb} GB, Node ${machine.node}; ` +
      `${postgres ? 'PostgreSQL' : 'SQLite'}, services with LOG_LEVEL=warn. Customers for backlog/empty_poll are inserted into the CRM's database directly.`,
  );

  // push_lag: webhook and hybrid always, amqp when a broker is configured; each with a process
  // per service, and hybrid again with the three in one process, as `npm start` runs them
  // (`--modes=hybrid-one-process` selects that one).
  const modes: [string, Record<string, string>, boolean][] = [
    ['webhook', {}, false],
    ['hybrid', {}, false],
    ['hybrid', {}, true],
  ];
  if (process.env.AMQP_URL) {
    modes.push([
      'amqp',
      {
        AMQP_URL: process.env.AMQP_URL,
        AMQP_NAME_PREFIX: `bench-${randomBytes(4).toString('hex')}.`,
      },
      false,
    ]);
  }
  const lag: LagResult[] = [];
  const deleteAmqpTopology = async (env: Record<string, string>) => {
    if (!env.AMQP_URL || !env.AMQP_NAME_PREFIX) return;
    const amqp = (await import(pathToFileURL(path.join(DIST, 'core/amqp.js')).href)) as {
      deleteTopology: (url: string, prefix: string) => Promise<void>;
    };
    await amqp.deleteTopology(env.AMQP_URL, env.AMQP_NAME_PREFIX);
  };
  for (const [mode, env, oneProcess] of selected('push_lag')
    ? modes.filter(
        ([mode, , oneProcess]) =>
          !modesArg || modesArg.includes(oneProcess ? `${mode}-one-process` : mode),
      )
    : []) {
    try {
      const result = await pushLag(mode, env, oneProcess);
      if (result) lag.push(result);
    } finally {
      await deleteAmqpTopology(env);
    }
  }

  const creates = selected('create_throughput') ? await createThroughput() : null;

  // start_up: npm start on the tree just built, until every service is ready; it measures the
  // embedded default, so a PostgreSQL run leaves it out.
  const startUpFigures =
    selected('start_up') && !postgres ? await startUp(SIZES.start_up_runs) : null;

  // backlog, empty_poll and rss at each size, platform then baseline, against identical stacks.
  const sizes = (
    sizesArg ?? [...new Set([SIZES.empty_poll_small, SIZES.backlog, SIZES.empty_poll_large])]
  ).sort((a, b) => a - b);
  const runs: Record<System, BacklogRun[]> = { platform: [], baseline: [] };
  for (const size of selected('backlog') ? sizes : []) {
    for (const system of platformOnly
      ? (['platform'] as const)
      : (['platform', 'baseline'] as const))
      runs[system].push(await backlogRun(system, size));
  }
  const at = (system: System, size: number) => runs[system].find((run) => run.size === size);
  // The largest backlog again with the three services in one process, as `npm start` runs them;
  // a failure there is reported and leaves the rest of the run's figures to be written.
  let oneProcessBacklog: BacklogRun | null = null;
  if (at('platform', SIZES.empty_poll_large)?.backlog_per_s != null) {
    try {
      oneProcessBacklog = await backlogRun('platform', SIZES.empty_poll_large, true);
    } catch (error) {
      say(`backlog in one process failed: ${(error as Error).message}`);
    }
  }

  // Push lag in the headline is the default mode's (hybrid); every mode is in push_lag.
  const headlineLag = lag.find((result) => result.mode === 'hybrid') ?? lag[0];
  const results: BenchResults = {
    generated_at: new Date().toISOString(),
    commit,
    quick,
    database: postgres ? 'postgres' : 'sqlite',
    machine,
    sizes: SIZES,
    notes: [
      'push lag = package request created_at (Inventory) - customer created_at (CRM), both server clocks on this machine, ms resolution',
      'push_lag_p50_ms/p99_ms are the hybrid (default) mode; every mode is under push_lag',
      'push lag is measured at the steady rate after a warm-up on freshly started services that ramps from a tenth of the rate to all of it over sizes.push_warmup_seconds; the warm-up figures are under push_lag[].warmup',
      `services run with their defaults (DELIVERY_BATCH_SIZE 250, DELIVERY_CONCURRENCY 8) on ${postgres ? 'PostgreSQL, three fresh schemas per run on the same machine (its server counted in no CPU figure)' : 'SQLite files in a fresh DATA_DIR per run'}; the load generator and the baseline share the same 2 CPUs`,
      "backlog and empty_poll customers are inserted into the CRM's database directly, not through the API",
      `the baseline's backlog is followed for ${BASELINE_WINDOW_MS / 1000} s at most; past that, its time and CPU per customer are projected: the listing as measured, then the rest at the rate and CPU of the window after its first post (its rate is flat); measured_window in its runs says so, and the customers it had not reached are then marked handled unposted for its empty poll`,
      `create_throughput = POST /customers on a CRM of its own (fresh database, no rate limit): sizes.create_sequential one at a time, then sizes.create_concurrent with 16 in flight, after sizes.create_warmup; latency from sending to the whole answer read; CRM CPU per create over the 16-in-flight part`,
      'audit = POST /api/audits on the integration after the backlog was delivered, until GET /api/audits/{id} says finished; rss sampled every 100 ms meanwhile (before = just before it started)',
      'empty_poll platform = GET /events?after=<last>&limit=500&wait=0; baseline = one full list of all customers finding nothing new',
      "CPU per customer = user + system CPU ms of each service process (all its threads, from /proc/<pid>/stat, 10 ms steps) over a window, divided by the package requests Inventory created in it; push: from the end of the warm-up until every customer is delivered, at sizes.push_rate (the services' idle work included); backlog: from the consumer's readiness until the backlog is delivered, at sizes.backlog",
      'cpu_ms_per_customer_push is the hybrid (default) mode; every mode is under push_lag',
      'start_up = `npm start` on the tree the bench just built, from spawning npm until the last of the three services answers /ready, on a fresh DATA_DIR each time (new databases: their migrations included); the median of sizes.start_up_runs',
      quick
        ? 'quick mode: the "_1m" figures are at sizes.empty_poll_large, the "_1k" at sizes.empty_poll_small'
        : 'full mode',
    ],
    platform: {
      push_lag_p50_ms: headlineLag?.p50_ms ?? null,
      push_lag_p99_ms: headlineLag?.p99_ms ?? null,
      push_lag_max_ms: headlineLag?.max_ms ?? null,
      backlog_per_s: at('platform', SIZES.backlog)?.backlog_per_s ?? null,
      empty_poll_ms_1k: at('platform', SIZES.empty_poll_small)?.empty_poll_ms ?? null,
      empty_poll_ms_1m: at('platform', SIZES.empty_poll_large)?.empty_poll_ms ?? null,
      rss_mb_total_1m: at('platform', SIZES.empty_poll_large)?.rss_mb_total ?? null,
      resident_together_mb_1m: at('platform', SIZES.empty_poll_large)?.resident_together_mb ?? null,
      cpu_ms_per_customer_push: headlineLag?.cpu_ms_per_customer ?? null,
      cpu_ms_per_customer_backlog: at('platform', SIZES.backlog)?.cpu_ms_per_customer ?? null,
      audit_seconds_1m: at('platform', SIZES.empty_poll_large)?.audit?.seconds ?? null,
      audit_rss_peak_mb_1m:
        at('platform', SIZES.empty_poll_large)?.audit?.integration_rss_peak_mb ?? null,
      audit_rss_before_mb_1m:
        at('platform', SIZES.empty_poll_large)?.audit?.integration_rss_before_mb ?? null,
      start_up_ms: startUpFigures?.median_ms ?? null,
      creates_per_s: creates?.per_s ?? null,
      creates_p99_ms: creates?.p99_ms ?? null,
    },
    baseline: {
      backlog_per_s: at('baseline', SIZES.backlog)?.backlog_per_s ?? null,
      empty_poll_ms_1k: at('baseline', SIZES.empty_poll_small)?.empty_poll_ms ?? null,
      empty_poll_ms_1m: at('baseline', SIZES.empty_poll_large)?.empty_poll_ms ?? null,
      rss_mb_total_1m: at('baseline', SIZES.empty_poll_large)?.rss_mb_total ?? null,
      resident_together_mb_1m: at('baseline', SIZES.empty_poll_large)?.resident_together_mb ?? null,
      cpu_ms_per_customer_backlog: at('baseline', SIZES.backlog)?.cpu_ms_per_customer ?? null,
    },
    push_lag: lag.map(({ sorted: _sorted, ...rest }) => rest),
    runs,
    one_process_backlog: oneProcessBacklog,
    start_up: startUpFigures,
    create_throughput: creates,
    duration_s: 0,
  };

  // Final table: platform vs baseline, with the ratio in the direction where > 1 means the platform is better.
  say('');
  for (const line of formatTable(results)) say(line);

  const lagSeries: LagSeries[] = lag.map((result) => ({
    label: `platform, ${result.mode}`,
    sorted: result.sorted,
  }));
  const bars: ThroughputBar[] = sizes.map((size) => ({
    size,
    platform: at('platform', size)?.backlog_per_s ?? null,
    baseline: at('baseline', size)?.backlog_per_s ?? null,
  }));
  results.duration_s = round((performance.now() - benchStarted) / 1000, 1);
  if (profileDir) printProfileSummaries(profileDir, serviceNames);
  if (only || platformOnly || sizesArg || modesArg || rateArg) {
    // A partial run must not overwrite the figures docs/figures/bench.md shows.
    say(`\nPartial run in ${results.duration_s} s; nothing written.`);
    return;
  }
  const database = postgres ? 'postgres' : 'sqlite';
  const subtitle = `${quick ? 'quick mode' : 'full mode'}, ${machine.cpus} CPUs, ${machine.memory_gb} GB, Node ${machine.node}, ${postgres ? 'PostgreSQL' : 'SQLite'}`;
  // A quick run's files go beside the test output: the committed ones stay the full run's.
  const outDir = quick ? QUICK_DIR : BENCH_DIR;
  mkdirSync(outDir, { recursive: true });
  const written = (['json', 'svg'] as const).map((extension) =>
    path.join(outDir, resultsFile(database, extension)),
  );
  writeFileSync(written[1]!, await renderChart(lagSeries, bars, subtitle));
  // Formatted as Prettier leaves it, so `npm run lint` accepts the committed file.
  writeFileSync(
    written[0]!,
    await format(JSON.stringify(results), {
      ...(await resolveConfig(written[0]!)),
      parser: 'json',
    }),
  );
  if (quick) {
    say(`\nWrote ${written.join(' and ')} in ${results.duration_s} s.`);
    return;
  }
  await writeFiguresMarkdown(savedFullRuns(BENCH_DIR), FIGURES_FILE);
  say(
    `\nWrote ${written.map((file) => path.relative(process.cwd(), file)).join(', ')} and docs/figures/bench.md in ${results.duration_s} s.`,
  );
}

if (process.argv.includes('--figures-only')) {
  // Renders docs/figures/bench.md again from the saved full runs, running nothing (after a change
  // to how the figures are shown). Quick results are not the docs' figures.
  const runs = savedFullRuns(BENCH_DIR);
  if (runs.length === 0) {
    throw new Error(
      'bench/ holds no full run; run `npm run bench` (full) before rendering the figures',
    );
  }
  await writeFiguresMarkdown(runs, FIGURES_FILE);
  say('Wrote docs/figures/bench.md from the saved full runs.');
} else {
  await main();
}
