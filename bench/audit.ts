/**
 * audit: after a backlog run has delivered every customer, one audit (`POST /api/audits`) of the
 * CRM against Inventory, timed, with the integration process's resident memory sampled meanwhile:
 * its peak against what it held before shows that the audit's memory does not grow with the
 * number of customers.
 */
import { round } from './numbers.js';
import { progress } from './output.js';
import type { AuditRun } from './results.js';
import { rssMb, type Service } from './services.js';

const POLL_MS = 100;

export async function auditRun(integration: Service, label: string): Promise<AuditRun | null> {
  progress(`audit ${label}`);
  const pid = integration.child.pid;
  const rssBefore = rssMb(pid);
  let peak = rssBefore ?? 0;
  const started = performance.now();
  const answer = await fetch(`${integration.url}/api/audits`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  if (answer.status !== 202) throw new Error(`POST /api/audits answered ${answer.status}`);
  const { id } = (await answer.json()) as { id: string };
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    peak = Math.max(peak, rssMb(pid) ?? 0);
    const audit = (await (await fetch(`${integration.url}/api/audits/${id}`)).json()) as {
      state: string;
      customers_checked: number;
      drift_total: number;
      error: string | null;
    };
    if (audit.state === 'running') continue;
    if (audit.state !== 'finished') throw new Error(`audit ${id} ${audit.state}: ${audit.error}`);
    const seconds = (performance.now() - started) / 1000;
    return {
      customers: audit.customers_checked,
      seconds: round(seconds, 2),
      per_s: round(audit.customers_checked / seconds, 0),
      drift_total: audit.drift_total,
      integration_rss_before_mb: rssBefore,
      integration_rss_peak_mb: round(peak, 1),
    };
  }
}
