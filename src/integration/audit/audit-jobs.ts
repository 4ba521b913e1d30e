import { randomUUID } from 'node:crypto';
import type { Audit } from '../../contracts/audit.js';
import type { Logger } from '../../core/logging.js';
import type { CrmClient } from '../crm-client.js';
import type { InventoryClient } from '../inventory-client.js';
import type { AuditsRepository } from '../store/audits.js';
import type { Actor } from '../store/read-models.js';
import { newAudit, runAudit } from './run-audit.js';

export interface AuditJobsOptions {
  audits: AuditsRepository;
  crm: Pick<CrmClient, 'customerStates' | 'customerState' | 'customerCount'>;
  inventory: Pick<InventoryClient, 'welcomeRequestsByCustomer'>;
  instanceId: string;
  logger: Logger;
  /** As in `AuditRunOptions`. Default 30000. */
  settleMs?: number;
  /** Called when an audit sent customers through the pipeline again (wakes the worker). */
  onRepaired?: () => void;
}

/** Least time between two writes of a running audit's progress. */
const SAVE_EVERY_MS = 1_000;

/**
 * Runs audits in the background of this instance, one at a time across all instances (a new one
 * is refused while another runs): progress and the result are written to the database, where
 * `GET /api/audits/{id}` reads them from any instance. An audit that finds drift opens the
 * `audit.drift_found` alert's incident; one that finds none resolves it.
 */
export class AuditJobs {
  private running: { abort: AbortController; done: Promise<void> } | undefined;

  constructor(private readonly options: AuditJobsOptions) {}

  /** Starts an audit; answers it, or the audit already running (and starts none). */
  async start(repair: boolean, by: Actor): Promise<{ audit: Audit; started: boolean }> {
    const { audits, logger } = this.options;
    const audit = newAudit(randomUUID(), repair, this.options.instanceId);
    const running = await audits.begin(audit);
    if (running) return { audit: running, started: false };
    const abort = new AbortController();
    let savedAt = 0;
    const done = runAudit(audit, {
      ...this.options,
      actor: by,
      signal: abort.signal,
      onProgress: async (progress) => {
        if (progress.repaired > 0) this.options.onRepaired?.();
        if (Date.now() - savedAt < SAVE_EVERY_MS) return;
        savedAt = Date.now();
        await audits.save(progress);
      },
    })
      .then(async () => {
        audit.state = 'finished';
        audit.finished_at = new Date().toISOString();
        await audits.finish(audit);
        logger.info(
          { audit: audit.id, drift: audit.drift, in_flight: audit.in_flight },
          `Audit ${audit.id} finished: ${audit.customers_checked} customers, ${audit.drift_total} with drift${audit.repair ? `, ${audit.repaired} sent again` : ''}`,
        );
      })
      .catch(async (error: unknown) => {
        audit.state = 'failed';
        audit.finished_at = new Date().toISOString();
        audit.error = abort.signal.aborted
          ? 'This instance stopped before the audit finished; start it again.'
          : `${(error as Error).message}; start the audit again once that is fixed.`;
        logger.warn({ err: error, audit: audit.id }, `Audit ${audit.id} failed: ${audit.error}`);
        await audits.save(audit).catch(() => {});
      })
      .finally(() => {
        this.running = undefined;
      });
    this.running = { abort, done };
    return { audit: structuredClone(audit), started: true };
  }

  /** Stops the audit running here, recording it as failed. */
  async stop(): Promise<void> {
    const running = this.running;
    if (!running) return;
    running.abort.abort();
    await running.done;
  }
}
