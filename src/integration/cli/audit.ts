import { Compile } from 'typebox/compile';
import {
  AuditSchema,
  DRIFT_KINDS,
  type Audit,
  type CustomerResync,
  type DriftKind,
} from '../../contracts/audit.js';
import { CliFailure, type ApiClient } from './api-client.js';
import { showProgress, type ProgressStream } from './progress.js';
import { oneLine } from './render.js';

const DRIFT_LABELS: Record<DriftKind, string> = {
  missing_package: 'missing package',
  duplicate_packages: 'duplicate packages',
  stale_recipient: 'stale recipient',
  pending_after_deletion: 'pending after deletion',
  unknown_customer: 'unknown customer',
};

/** Examples of each kind `mip audit` prints (all of them are in `--json`). */
const EXAMPLES_PRINTED = 5;

/**
 * Starts an audit and follows it to its end, showing progress on `progress`; answers the finished
 * audit, or throws when it failed or its instance stopped.
 */
export async function followNewAudit(
  client: ApiClient,
  repair: boolean,
  progress: ProgressStream,
  pollMs = 500,
): Promise<Audit> {
  const shape = Compile(AuditSchema);
  let audit = await client.request('POST', '/api/audits', { body: { repair }, shape });
  const stop = showProgress(
    progress,
    () => audit.customers_total,
    () => audit.customers_checked,
    'customers',
  );
  try {
    while (audit.state === 'running') {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      audit = await client.request('GET', `/api/audits/${audit.id}`, { shape });
    }
  } finally {
    stop();
  }
  if (audit.state !== 'finished') {
    throw new CliFailure(
      audit.state === 'abandoned'
        ? `Audit ${audit.id} was abandoned: the instance running it (${audit.instance}) stopped. Run mip audit again.`
        : `Audit ${audit.id} failed: ${audit.error ?? 'no reason given'}`,
    );
  }
  return audit;
}

/** The audit's counts and a few examples of each kind of drift, for people. */
export function formatAudit(audit: Audit): string {
  const lines = [
    `Audit ${audit.id}: ${audit.customers_checked} customers and ${audit.requests_checked} welcome package requests compared.`,
    audit.drift_total === 0
      ? 'No drift: the CRM and Inventory agree.'
      : `${audit.drift_total} customer(s) with drift:`,
  ];
  for (const kind of DRIFT_KINDS) {
    const count = audit.drift[kind];
    if (count === 0) continue;
    lines.push(`  ${DRIFT_LABELS[kind]}: ${count}`);
    for (const example of audit.examples[kind].slice(0, EXAMPLES_PRINTED)) {
      lines.push(`    ${example.customer_id}  ${oneLine(example.detail)}`);
    }
    if (count > EXAMPLES_PRINTED)
      lines.push(`    … ${count - EXAMPLES_PRINTED} more (--json lists up to 100)`);
  }
  if (audit.in_flight > 0) {
    lines.push(
      `${audit.in_flight} customer(s) differ while a delivery for them is under way (not drift).`,
    );
  }
  if (audit.repair) {
    lines.push(
      `Repair: ${audit.repaired} customer(s) sent through the pipeline again (mip trace <id> shows each); duplicates and unknown customers need a person.`,
    );
  } else if (audit.drift_total > 0) {
    lines.push('Run mip audit --repair to send the drifted customers through the pipeline again.');
  }
  return lines.join('\n');
}

/** What `mip resync --customer` did, for people. */
export const formatCustomerResync = (answer: CustomerResync) =>
  `Sending customer ${answer.customer_id} (version ${answer.version}${answer.deleted ? ', deleted' : ''}) through the pipeline again` +
  (answer.sent
    ? `${answer.package_request_id ? ` for package request ${answer.package_request_id}` : ', to make its package'}; mip trace ${answer.customer_id} shows it.`
    : ': an instance is delivering it right now; run this again once that is done.');
