import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as prettier from 'prettier';
import type { Reporter, TestModule, TestRunEndReason } from 'vitest/node';
import { REPORT_FILE, type ReportedScenario } from '../support/scenario-report.js';

export interface ChaosReporterOptions {
  /**
   * Where to write the figures page (Markdown). Default: none, so a run only prints its summary;
   * vitest.chaos.config.ts (the full-size `npm run chaos`) sets docs/figures/battery.md.
   */
  figuresFile?: string;
  /** Where the scenarios append their reports. Default test-artifacts/chaos.jsonl. */
  reportFile?: string;
  /** The commit the run is on. Default: read from git when the run starts, `-dirty` if edited. */
  commit?: string;
  /** The run's date. Default: now, when the run ends. */
  now?: () => Date;
  /** Where the summary is printed. Default process.stdout. */
  stdout?: NodeJS.WritableStream;
}

/** One scenario as it ran: the test's outcome and, when it got that far, its counts. */
interface ScenarioRow {
  database: string;
  test: string;
  state: 'passed' | 'failed';
  report: ReportedScenario | undefined;
}

/**
 * `npm run chaos`'s summary: one line per scenario with its counts (each scenario appends its
 * report to test-artifacts/chaos.jsonl from its test process), then the verdict, taken from the
 * test results themselves. With `figuresFile`, the same as a Markdown page stamped with the commit
 * and date, so the figures in the docs always come from a run and are never edited by hand.
 */
export default class ChaosSummaryReporter implements Reporter {
  private readonly reportFile: string;
  private commit: string | undefined;

  constructor(private readonly options: ChaosReporterOptions = {}) {
    this.reportFile = options.reportFile ?? REPORT_FILE;
    this.commit = options.commit;
  }

  onInit(): void {
    fs.rmSync(this.reportFile, { force: true });
    // Read at the start: the figures describe the code the run started from.
    this.commit ??= describeCommit(process.cwd());
  }

  async onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<unknown> = [],
    reason: TestRunEndReason = 'passed',
  ): Promise<void> {
    const reports = this.readReports();
    const rows: ScenarioRow[] = [];
    let skipped = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state !== 'passed' && state !== 'failed') {
          skipped += 1;
          continue;
        }
        const database = test.project.name;
        const report = reports.find((r) => r.database === database && r.test === test.fullName);
        rows.push({ database, test: test.fullName, state, report });
      }
    }
    const failed = rows.filter((row) => row.state === 'failed');
    const pass = failed.length === 0 && unhandledErrors.length === 0 && rows.length > 0;
    const verdict =
      rows.length === 0
        ? 'NONE (no scenario ran)'
        : pass
          ? `PASS (${rows.length} scenarios, ${reports.length} reported)`
          : `FAIL (${failed.length} of ${rows.length} scenarios${unhandledErrors.length ? `, ${unhandledErrors.length} unhandled errors` : ''})`;

    const out = this.options.stdout ?? process.stdout;
    out.write('\nChaos battery\n');
    for (const report of reports) out.write(`  ${report.line}\n`);
    out.write(`\nverdict: ${verdict}\n`);
    for (const row of failed) out.write(`  failed: ${row.database}: ${row.test}\n`);

    // An interrupted run (Ctrl-C) has not measured what the page would claim: keep the last one.
    if (!this.options.figuresFile || reason === 'interrupted' || rows.length === 0) return;
    const page = renderFiguresPage({
      commit: this.commit ?? describeCommit(process.cwd()),
      date: (this.options.now ?? (() => new Date()))(),
      rows,
      skipped,
      verdict,
    });
    const file = this.options.figuresFile;
    // Formatted as `npm run lint` expects, so a fresh page can be committed as it is.
    const style = (await prettier.resolveConfig(file)) ?? {};
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, await prettier.format(page, { ...style, filepath: file }));
    out.write(`figures written to ${this.options.figuresFile}\n`);
  }

  private readReports(): ReportedScenario[] {
    if (!fs.existsSync(this.reportFile)) return [];
    return fs
      .readFileSync(this.reportFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as ReportedScenario);
  }
}

/**
 * The short commit of the working tree at `cwd`, with `-dirty` when tracked or new files differ
 * from it (the generated figures themselves excepted); `unknown` outside a git checkout.
 */
export function describeCommit(cwd: string): string {
  const git = (...args: string[]) =>
    execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const commit = git('rev-parse', '--short=12', 'HEAD').trim();
    const changes = git('status', '--porcelain', '--', '.', ':(exclude)docs/figures').trim();
    return changes ? `${commit}-dirty` : commit;
  } catch {
    return 'unknown';
  }
}

const cell = (value: unknown): string => String(value).replaceAll('|', '\\|').replaceAll('\n', ' ');

function renderRow({ database, test, state, report }: ScenarioRow): string {
  const verdict = state === 'passed' ? 'PASS' : 'FAIL';
  if (!report) {
    return `| ${cell(test)} | — | ${database} | — | — | — | — | — | — | failed before counting | ${verdict} |`;
  }
  const figures = Object.entries(report.details)
    .map(([key, value]) => `${key}=${value}`)
    .join(', ');
  return (
    `| ${cell(report.scenario)} | ${report.mode} | ${database} | ${report.created} | ` +
    `${report.delivered} | ${report.duplicates} | ${report.missing} | ${report.dead_letters} | ` +
    `${report.seconds.toFixed(1)} | ${cell(figures || '—')} | ${verdict} |`
  );
}

/** The Markdown page of one battery run: what ran, where, and one row per scenario. */
export function renderFiguresPage(run: {
  commit: string;
  date: Date;
  rows: readonly ScenarioRow[];
  skipped: number;
  verdict: string;
}): string {
  const seeds = [...new Set(run.rows.flatMap((row) => (row.report ? [row.report.seed] : [])))];
  const lines = [
    '# Reliability battery: figures of the last full run',
    '',
    '<!-- Generated by `npm run chaos` (test/chaos/reporter.ts). Do not edit by hand: run it again. -->',
    '',
    `Generated by \`npm run chaos\` on commit \`${run.commit}\`, ${run.date.toISOString()}, ` +
      `Node ${process.version} on ${os.cpus().length} CPUs` +
      (seeds.length ? `, seed ${seeds.join(', ')}` : '') +
      '.',
    '',
    `**Verdict: ${run.verdict}**` +
      (run.skipped ? ` — a partial run, skipped: ${run.skipped}.` : ''),
    '',
    'How to read it: [testing.md](../testing.md#the-reliability-battery).',
    '',
    '| scenario | mode | database | created | delivered | duplicates | missing | dead letters | seconds | figures | verdict |',
    '| --- | --- | --- | --: | --: | --: | --: | --: | --: | --- | --- |',
    ...run.rows.map(renderRow),
    '',
  ];
  return lines.join('\n');
}
