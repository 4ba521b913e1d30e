import {
  AUDIT_EXAMPLES_PER_KIND,
  DRIFT_KINDS,
  REPAIRABLE_DRIFT_KINDS,
  type Audit,
  type DriftKind,
} from '../../contracts/audit.js';
import type { CrmClient } from '../crm-client.js';
import type { InventoryClient } from '../inventory-client.js';
import type { AuditsRepository, Resend } from '../store/audits.js';
import type { Actor } from '../store/read-models.js';
import { driftOf, itemsOf, pairsOf, type CustomerPair, type Drift } from './compare.js';

export interface AuditRunOptions {
  crm: Pick<CrmClient, 'customerStates' | 'customerState' | 'customerCount'>;
  inventory: Pick<InventoryClient, 'welcomeRequestsByCustomer'>;
  audits: Pick<AuditsRepository, 'standings' | 'resend'>;
  /** Who repairs (for the timelines). */
  actor: Actor;
  /** Customers per page read from each side. Default 500. */
  pageSize?: number;
  /**
   * A customer without a delivery that the CRM changed this recently (before the audit started,
   * or during it) may not have reached this service yet: under way, not drift. Default 30000.
   */
  settleMs?: number;
  signal?: AbortSignal;
  /** Called after each batch of customers with the report so far. */
  onProgress?: (audit: Audit) => Promise<void> | void;
}

const BATCH = 500;

/** A new, empty report. */
export function newAudit(id: string, repair: boolean, instance: string, now = Date.now()): Audit {
  const perKind = <T>(value: () => T) =>
    Object.fromEntries(DRIFT_KINDS.map((kind) => [kind, value()])) as Record<DriftKind, T>;
  return {
    id,
    state: 'running',
    repair,
    started_at: new Date(now).toISOString(),
    finished_at: null,
    instance,
    progress: 0,
    customers_total: 0,
    customers_checked: 0,
    requests_checked: 0,
    in_flight: 0,
    drift: perKind(() => 0),
    drift_total: 0,
    examples: perKind(() => []),
    repaired: 0,
    error: null,
  };
}

/** The resend that repairs a drift, or undefined when it needs a person. */
function resendOf(drift: Drift, auditId: string): Resend | undefined {
  const { state, requests } = drift.pair;
  if (!state || !REPAIRABLE_DRIFT_KINDS.includes(drift.kind)) return undefined;
  const open = requests.find((request) => request.status === 'pending');
  return {
    state,
    packageRequestId: drift.kind === 'missing_package' ? null : (open?.id ?? null),
    reason: `audit ${auditId}: ${drift.kind}`,
  };
}

/**
 * Compares the CRM with Inventory, customer by customer in id order, into `audit` (counts, and
 * up to AUDIT_EXAMPLES_PER_KIND examples of each kind of drift); with `audit.repair`, sends each
 * repairable drifted customer through the pipeline again. What disagrees while a delivery for the
 * customer is under way is counted as in flight, not drift.
 */
export async function runAudit(audit: Audit, options: AuditRunOptions): Promise<Audit> {
  const pageSize = options.pageSize ?? 500;
  const settleMs = options.settleMs ?? 30_000;
  const settledBefore = Date.parse(audit.started_at) - settleMs;
  const total = await options.crm.customerCount();
  audit.customers_total = total;
  const states = itemsOf(
    (after) => options.crm.customerStates(after, pageSize),
    (s) => s.id,
  );
  const requests = itemsOf(
    (after) => options.inventory.welcomeRequestsByCustomer(after, pageSize),
    (r) => r.customer_id,
  );

  const settle = async (candidates: Drift[]): Promise<Drift[]> => {
    const standings = await options.audits.standings(candidates.map((d) => d.pair.customerId));
    const drifted: Drift[] = [];
    for (const drift of candidates) {
      const { state } = drift.pair;
      const standing = standings.get(drift.pair.customerId);
      let underWay: boolean;
      if (state === undefined) {
        // Created after the CRM's side passed its id, and delivered since? Ask the CRM again.
        underWay = (await options.crm.customerState(drift.pair.customerId)) !== undefined;
      } else if (standing) {
        underWay = standing.state !== 'delivered' && standing.state !== 'dead';
        underWay ||= standing.version !== state.version;
      } else {
        underWay = Date.parse(state.changed_at) > settledBefore;
      }
      if (underWay) audit.in_flight += 1;
      else drifted.push(drift);
    }
    return drifted;
  };

  const check = async (batch: CustomerPair[]) => {
    const drifted = await settle(batch.flatMap((pair) => driftOf(pair) ?? []));
    for (const drift of drifted) {
      audit.drift[drift.kind] += 1;
      audit.drift_total += 1;
      const examples = audit.examples[drift.kind];
      if (examples.length < AUDIT_EXAMPLES_PER_KIND) {
        examples.push({
          customer_id: drift.pair.customerId,
          detail: drift.detail,
          package_request_ids: drift.pair.requests.map((request) => request.id),
        });
      }
    }
    if (audit.repair) {
      const resends = drifted.flatMap((drift) => resendOf(drift, audit.id) ?? []);
      audit.repaired += await options.audits.resend(resends, options.actor);
    }
    // Customers created during the audit may take it past the count read at its start.
    audit.progress = Math.min(0.999, audit.customers_checked / Math.max(1, total));
    await options.onProgress?.(audit);
  };

  let batch: CustomerPair[] = [];
  for await (const pair of pairsOf(states, requests)) {
    options.signal?.throwIfAborted();
    if (pair.state) audit.customers_checked += 1;
    audit.requests_checked += pair.requests.length;
    batch.push(pair);
    if (batch.length === BATCH) {
      await check(batch);
      batch = [];
    }
  }
  await check(batch);
  audit.progress = 1;
  return audit;
}
