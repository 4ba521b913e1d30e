import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { crmService } from '../../src/crm/service.js';
import { integrationService } from '../../src/integration/service.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp, type TestApp } from '../support/apps.js';

const root = new URL('../../', import.meta.url);
const read = (file: string) => fs.readFileSync(new URL(file, root), 'utf8');

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  annotations?: { summary?: string; description?: string };
}
const rules = (
  parse(read('deploy/prometheus/alerts.yml')) as { groups: { name: string; rules: Rule[] }[] }
).groups.flatMap((group) => group.rules);
const dashboard = JSON.parse(read('deploy/grafana/dashboard.json')) as {
  panels: { title: string; targets: { expr: string }[] }[];
};

/** The platform's own metric names a PromQL expression reads (histogram series by their base). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b((?:integration|crm|inventory|http)_[a-z_]+)\b/g)].map((m) =>
    m[1]!.replace(/_(bucket|sum|count)$/, ''),
  );
}

const apps: TestApp<unknown>[] = [];
afterAll(async () => {
  await Promise.all(apps.map((app) => app.close()));
});

/** The metric names each service exports on /metrics, after a request has been counted. */
async function exported(): Promise<Set<string>> {
  const names = new Set<string>();
  const services = [
    [crmService, {}],
    [inventoryService, {}],
    // amqp mode adds the broker's dead-letter gauge; nothing connects until started.
    [integrationService, { SYNC_MODE: 'amqp', AMQP_URL: 'amqp://127.0.0.1:9' }],
  ] as const;
  for (const [definition, env] of services) {
    const app = (await createTestApp(definition as never, { env })) as TestApp<unknown>;
    apps.push(app);
    await app.app.inject({ method: 'GET', url: '/health' });
    const text = (await app.app.inject({ method: 'GET', url: '/metrics' })).body;
    for (const match of text.matchAll(/^# TYPE (\S+) /gm)) names.add(match[1]!);
  }
  return names;
}

describe('deploy/prometheus/alerts.yml and deploy/grafana/dashboard.json', () => {
  it('name only metrics the services export', async () => {
    const names = await exported();
    const named = [
      ...rules.flatMap((rule) => metricsIn(rule.expr)),
      ...dashboard.panels.flatMap((panel) => panel.targets.flatMap((t) => metricsIn(t.expr))),
    ];
    expect(named.length).toBeGreaterThan(10);
    expect([...new Set(named)].filter((name) => !names.has(name))).toEqual([]);
  });

  it('give every alert a wait and a summary and description saying what to do', () => {
    expect(rules.map((rule) => rule.alert)).toEqual(
      expect.arrayContaining([
        'IntegrationDeadLetters',
        'IntegrationCircuitOpen',
        'IntegrationBacklogHigh',
        'IntegrationFeedFailing',
      ]),
    );
    for (const rule of rules) {
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
    }
  });

  // promtool comes with Debian's prometheus package; CI installs it, so it never skips there.
  const promtool = spawnSync('promtool', ['--version']).status === 0;
  it.runIf(promtool || process.env.CI === 'true')('pass promtool check rules', () => {
    const check = spawnSync('promtool', [
      'check',
      'rules',
      new URL('deploy/prometheus/alerts.yml', root).pathname,
    ]);
    expect(check.error).toBeUndefined();
    expect(check.stdout.toString() + check.stderr.toString()).toContain('SUCCESS');
    expect(check.status).toBe(0);
  });
});
