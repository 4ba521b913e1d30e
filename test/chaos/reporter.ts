import fs from 'node:fs';
import type { Reporter, TestModule } from 'vitest/node';
import { REPORT_FILE, type ScenarioReport } from '../support/chaos.js';

/**
 * `npm run chaos`'s summary: one line per scenario with its counts (each scenario appends its
 * line to test-artifacts/chaos.jsonl), then the verdict, from the test results themselves.
 */
export default class ChaosSummaryReporter implements Reporter {
  onInit(): void {
    fs.rmSync(REPORT_FILE, { force: true });
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const lines = fs.existsSync(REPORT_FILE)
      ? fs
          .readFileSync(REPORT_FILE, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as ScenarioReport & { line: string })
      : [];
    const failed: string[] = [];
    let passed = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed += 1;
        else if (state === 'failed') failed.push(`${test.project.name}: ${test.fullName}`);
      }
    }
    const out = process.stdout;
    out.write('\nChaos battery\n');
    for (const report of lines) out.write(`  ${report.line}\n`);
    out.write(
      failed.length === 0
        ? `\nverdict: PASS (${passed} scenarios, ${lines.length} reported)\n`
        : `\nverdict: FAIL (${failed.length} of ${passed + failed.length} scenarios)\n${failed.map((name) => `  failed: ${name}`).join('\n')}\n`,
    );
  }
}
