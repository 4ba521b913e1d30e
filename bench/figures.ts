/**
 * The bench's figures as one table, rendered from bench/results.json: printed at the end of a run,
 * and written to docs/figures/bench.md (formatted by Prettier, so `npm run lint` accepts it).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { format, resolveConfig } from 'prettier';
import { round } from './numbers.js';
import { resultsFile, type BenchResults, type CpuPerCustomer } from './results.js';
import { checkTargets } from './targets.js';

/** A metric, its platform and baseline values, and which direction is better. */
type Row = [name: string, platform: number | null, baseline: number | null, better: Better];
type Better = 'higher' | 'lower';

/** The CPU-per-customer total, then one indented row per service process. */
function cpuRows(
  name: string,
  platform: CpuPerCustomer | null | undefined,
  baseline: CpuPerCustomer | null | undefined,
): Row[] {
  const services = Object.keys(platform ?? {}).filter((service) => service !== 'total');
  return [
    [name, platform?.total ?? null, baseline?.total ?? null, 'lower'],
    ...services.map((service): Row => {
      // The baseline's own poller stands where the integration service does.
      const counterpart = service === 'integration' ? 'baseline' : service;
      const label = baseline && service !== counterpart ? `${service} / ${counterpart}` : service;
      return [`  ${label}`, platform?.[service] ?? null, baseline?.[counterpart] ?? null, 'lower'];
    }),
  ];
}

export function figureRows(results: BenchResults): Row[] {
  const { sizes, platform, baseline } = results;
  const size = (n: number) => n.toLocaleString('en');
  return [
    ...results.push_lag.flatMap((lag): Row[] => [
      [`push lag p50, ${lag.mode} (ms)`, lag.p50_ms, null, 'lower'],
      [`push lag p99, ${lag.mode} (ms)`, lag.p99_ms, null, 'lower'],
      ...(lag.update_lag
        ? ([
            [`update lag p50, ${lag.mode} (ms)`, lag.update_lag.p50_ms, null, 'lower'],
            [`update lag p99, ${lag.mode} (ms)`, lag.update_lag.p99_ms, null, 'lower'],
          ] satisfies Row[])
        : []),
      // Results from before it was read have no such rows.
      ...(lag.memory
        ? ([
            [`rss after push ${lag.mode} (MB, total)`, lag.memory.rss_mb_total, null, 'lower'],
            ['↳ node binary counted once (MB)', lag.memory.resident_together_mb, null, 'lower'],
          ] satisfies Row[])
        : []),
    ]),
    [
      `backlog ${size(sizes.backlog)} (customers/s)`,
      platform.backlog_per_s,
      baseline.backlog_per_s,
      'higher',
    ],
    [
      `empty poll ${size(sizes.empty_poll_small)} (ms)`,
      platform.empty_poll_ms_1k,
      baseline.empty_poll_ms_1k,
      'lower',
    ],
    [
      `empty poll ${size(sizes.empty_poll_large)} (ms)`,
      platform.empty_poll_ms_1m,
      baseline.empty_poll_ms_1m,
      'lower',
    ],
    [
      `rss at ${size(sizes.empty_poll_large)} (MB, total)`,
      platform.rss_mb_total_1m,
      baseline.rss_mb_total_1m,
      'lower',
    ],
    [
      `  node binary counted once (MB)`,
      platform.resident_together_mb_1m,
      baseline.resident_together_mb_1m,
      'lower',
    ],
    // Results from before the one-process backlog was run have no such rows.
    ...(results.one_process_backlog
      ? ([
          [
            `backlog ${size(results.one_process_backlog.size)}, one process (customers/s)`,
            results.one_process_backlog.backlog_per_s,
            null,
            'higher',
          ],
          [
            `rss at ${size(results.one_process_backlog.size)}, one process (MB)`,
            results.one_process_backlog.rss_mb_total,
            null,
            'lower',
          ],
          ...cpuRows(
            `CPU per customer, backlog ${size(results.one_process_backlog.size)}, one process (ms)`,
            results.one_process_backlog.cpu_ms_per_customer,
            null,
          ),
        ] satisfies Row[])
      : []),
    // Results from before the audit existed have no audit rows.
    ...(platform.audit_seconds_1m === undefined
      ? []
      : ([
          [
            `audit of ${size(sizes.empty_poll_large)} customers (s)`,
            platform.audit_seconds_1m,
            null,
            'lower',
          ],
          [
            '  integration rss before it (MB)',
            platform.audit_rss_before_mb_1m ?? null,
            null,
            'lower',
          ],
          [
            '  integration rss peak during it (MB)',
            platform.audit_rss_peak_mb_1m ?? null,
            null,
            'lower',
          ],
        ] satisfies Row[])),
    // Results from before start_up existed have no start-up row.
    ...(platform.start_up_ms === undefined
      ? []
      : ([
          ['npm start → all three /ready (ms)', platform.start_up_ms, null, 'lower'],
        ] satisfies Row[])),
    // Results from before create_throughput existed have no create rows.
    ...(results.create_throughput
      ? ([
          ['POST /customers, 16 in flight (/s)', results.create_throughput.per_s, null, 'higher'],
          ['  p99 (ms)', results.create_throughput.p99_ms, null, 'lower'],
          [
            '  CRM CPU per create (ms)',
            results.create_throughput.crm_cpu_ms_per_create,
            null,
            'lower',
          ],
          [
            'POST /customers, one at a time, p50 (ms)',
            results.create_throughput.one_at_a_time.p50_ms,
            null,
            'lower',
          ],
        ] satisfies Row[])
      : []),
    ...results.push_lag.flatMap((lag) =>
      cpuRows(`CPU per customer, push ${lag.mode} (ms)`, lag.cpu_ms_per_customer, null),
    ),
    // Results from before it was counted have no such rows.
    ...results.push_lag.flatMap((lag): Row[] =>
      lag.inventory_calls_per_customer === undefined
        ? []
        : [
            [
              `Inventory write calls per customer, push ${lag.mode}`,
              lag.inventory_calls_per_customer,
              null,
              'lower',
            ],
          ],
    ),
    ...cpuRows(
      `CPU per customer, backlog ${size(sizes.backlog)} (ms)`,
      platform.cpu_ms_per_customer_backlog,
      baseline.cpu_ms_per_customer_backlog,
    ),
  ];
}

/** How many times better the platform is (> 1 means better), or — when not comparable. */
function betterBy([, platform, baseline, better]: Row): string {
  if (platform === null || baseline === null || platform <= 0 || baseline <= 0) return '—';
  return `${round(better === 'higher' ? platform / baseline : baseline / platform, 1)}×`;
}

const HEADER = ['metric', 'platform', 'baseline', 'platform better by'] as const;

/** The table as aligned lines for the terminal. */
export function formatTable(results: BenchResults): string[] {
  const line = (cells: readonly string[]) =>
    `${cells[0]!.padEnd(40)} ${cells[1]!.padStart(10)} ${cells[2]!.padStart(10)} ${cells[3]!.padStart(20)}`;
  return [
    line(HEADER),
    ...figureRows(results).map((row) =>
      line([row[0], String(row[1] ?? '—'), String(row[2] ?? '—'), betterBy(row)]),
    ),
  ];
}

const DATABASE_NAMES = { sqlite: 'SQLite', postgres: 'PostgreSQL' } as const;

// Plain text: characters Markdown would read as markup are escaped (an underscore inside a word,
// as in push_lag, is not markup).
const text = (value: string) => value.trim().replace(/[\\`*<>|]|(?<!\w)_|_(?!\w)/g, '\\$&');

/** One database's section: the run (commit, date, machine, sizes), its targets and every figure. */
function databaseSection(results: BenchResults): string[] {
  const { machine, sizes } = results;
  return [
    `## ${DATABASE_NAMES[results.database ?? 'sqlite']}`,
    '',
    '| run | |',
    '| --- | --- |',
    `| commit | ${results.commit ? `\`${results.commit}\`` : 'not recorded'} |`,
    `| date | ${results.generated_at.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')} |`,
    `| machine | ${machine.cpus} CPUs (${text(machine.cpu_model)}), ${machine.memory_gb} GB, ${text(machine.platform)} |`,
    `| Node | ${machine.node} |`,
    `| mode | ${results.quick ? 'quick' : 'full'}, ${results.duration_s} s |`,
    `| push | ${sizes.push_rate} customers/s for ${sizes.push_seconds} s, after a ${sizes.push_warmup_seconds} s warm-up |`,
    `| backlog | ${sizes.backlog.toLocaleString('en')} customers |`,
    '',
    '| target | goal | measured | met |',
    '| --- | ---: | ---: | :---: |',
    ...checkTargets(results).map(
      (target) =>
        `| ${text(target.measure)} | ${target.target} | ${target.value ?? '—'} | ${target.met === null ? 'not run' : target.met ? 'yes' : 'no'} |`,
    ),
    '',
    `| ${HEADER.join(' | ')} |`,
    '| --- | ---: | ---: | ---: |',
    ...figureRows(results).map(
      (row) =>
        // Markdown drops leading spaces: a sub-row is marked with an arrow instead.
        `| ${row[0].startsWith('  ') ? `↳ ${text(row[0])}` : text(row[0])} | ${row[1] ?? '—'} | ${row[2] ?? '—'} | ${betterBy(row)} |`,
    ),
    '',
    '### What the figures measure',
    '',
    ...results.notes.map((note) => `- ${text(note)}`),
    '',
  ];
}

/**
 * docs/figures/bench.md: one section per database the full bench last ran on (SQLite from
 * bench/results.json, PostgreSQL from bench/results-postgres.json), SQLite first.
 */
export async function renderFiguresMarkdown(runs: BenchResults[], file: string): Promise<string> {
  const lines = [
    '# Benchmark figures',
    '',
    '_Generated by `npm run bench` (bench/run.ts, bench/figures.ts) from bench/results.json and ' +
      'bench/results-postgres.json; do not edit by hand: run the bench again._',
    '',
    ...[...runs]
      .sort((a, b) => (a.database === 'postgres' ? 1 : 0) - (b.database === 'postgres' ? 1 : 0))
      .flatMap(databaseSection),
  ];
  return format(lines.join('\n'), { ...(await resolveConfig(file)), parser: 'markdown' });
}

/** The full runs' results in `dir` (results.json, results-postgres.json), whichever exist. */
export function savedFullRuns(dir: string): BenchResults[] {
  return (['sqlite', 'postgres'] as const).flatMap((database) => {
    const file = path.join(dir, resultsFile(database, 'json'));
    if (!existsSync(file)) return [];
    const results = JSON.parse(readFileSync(file, 'utf8')) as BenchResults;
    return results.quick ? [] : [results];
  });
}

export async function writeFiguresMarkdown(runs: BenchResults[], file: string): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, await renderFiguresMarkdown(runs, file));
}
