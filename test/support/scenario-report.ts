/**
 * What a battery scenario reports: its outcome counts, figures and verdict line, printed and
 * appended to test-artifacts/chaos.jsonl for the summary (test/chaos/reporter.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import type { SyncMode } from './chaos.js';
import { DIST } from './processes.js';

export interface Counts {
  created: number;
  delivered: number;
  duplicates: number;
  missing: number;
  /** Package requests for customers the CRM does not have. */
  strays: number;
  dead_letters: number;
}

export interface ScenarioReport extends Counts {
  scenario: string;
  mode: SyncMode;
  database: 'sqlite' | 'postgres';
  seed: number;
  seconds: number;
  /** Scenario-specific figures (kills, drain time, calls before Retry-After, …). */
  details: Record<string, number | string | boolean>;
}

/** A scenario's report as the summary reads it: the test that wrote it, and its printed line. */
export interface ReportedScenario extends ScenarioReport {
  /** The test's name, `describe > it`, as the reporter's TestCase.fullName spells it. */
  test: string;
  line: string;
}

const REPORT_FILE = path.join(DIST, '..', 'test-artifacts', 'chaos.jsonl');

/** Prints the scenario's one line and appends it to test-artifacts/chaos.jsonl for the summary. */
export function reportScenario(report: ScenarioReport): void {
  const details = Object.entries(report.details)
    .map(([key, value]) => `${key}=${value}`)
    .join(' ');
  const line =
    `chaos ${report.scenario} [${report.mode}, ${report.database}] ` +
    `created=${report.created} delivered=${report.delivered} duplicates=${report.duplicates} ` +
    `missing=${report.missing} dead_letters=${report.dead_letters} ${details} (${report.seconds.toFixed(1)} s)`;
  process.stdout.write(`${line}\n`);
  fs.mkdirSync(path.dirname(REPORT_FILE), { recursive: true });
  const reported: ReportedScenario = {
    ...report,
    test: expect.getState().currentTestName ?? '',
    line,
  };
  fs.appendFileSync(REPORT_FILE, `${JSON.stringify(reported)}\n`);
}

export { REPORT_FILE };
