import { sql } from 'kysely';
import type { Audit } from '../../contracts/audit.js';
import type { CustomerState } from '../../contracts/customer-states.js';
import type { Database } from '../../core/db.js';
import type { DeliveryState } from '../../contracts/admin-api.js';
import type { IntegrationTables } from '../migrations.js';
import type { Actor } from './read-models.js';
import { openIncident, resolveIncident } from '../alerts/incidents.js';
import { newDesiredState } from './inbox.js';
import { insertTimeline, type NewTimelineEntry } from './timeline.js';

/** A running audit whose instance has not written for this long has stopped: `abandoned`. */
export const AUDIT_ABANDONED_AFTER_MS = 60_000;

/** The key of the audit's incident: one is open while the latest audit found drift. */
export const AUDIT_INCIDENT_KEY = 'crm-inventory';

/** A customer to send through the pipeline again, as the CRM has it now. */
export interface Resend {
  state: CustomerState;
  /** The open request Inventory holds for it (to update or cancel); null: make one. */
  packageRequestId: string | null;
  /** Why, for its timeline (e.g. `audit 1a2b: missing_package`). */
  reason: string;
}

/** Where a customer's delivery stands, to tell drift from a delivery under way. */
export interface DeliveryStanding {
  state: DeliveryState;
  version: number;
}

const fromRow = (
  row: { report: string; state: Audit['state']; updated_at: number },
  now: number,
): Audit => {
  const audit = JSON.parse(row.report) as Audit;
  audit.state =
    row.state === 'running' && now - Number(row.updated_at) > AUDIT_ABANDONED_AFTER_MS
      ? 'abandoned'
      : row.state;
  return audit;
};

/** Audit jobs and what they (or a resync of one customer) send through the pipeline again. */
export function createAuditsRepository(database: Database<IntegrationTables>) {
  const { db } = database;
  const write = (audit: Audit, now: number) => ({
    state: audit.state,
    updated_at: now,
    finished_at: audit.finished_at === null ? null : Date.parse(audit.finished_at),
    report: JSON.stringify(audit),
  });
  return {
    /**
     * Records `audit` as running, unless another audit is running (and not abandoned): answers
     * that one instead, and records nothing.
     */
    async begin(audit: Audit, now = Date.now()): Promise<Audit | undefined> {
      return db.transaction().execute(async (trx) => {
        const running = await trx
          .selectFrom('audits')
          .select(['report', 'state', 'updated_at'])
          .where('state', '=', 'running')
          .where('updated_at', '>=', now - AUDIT_ABANDONED_AFTER_MS)
          .orderBy('started_at', 'desc')
          .executeTakeFirst();
        if (running) return fromRow(running, now);
        await trx
          .insertInto('audits')
          .values({
            id: audit.id,
            repair: audit.repair ? 1 : 0,
            instance: audit.instance,
            started_at: Date.parse(audit.started_at),
            ...write(audit, now),
          })
          .execute();
        return undefined;
      });
    },

    /** Writes the audit's progress, or that it failed. */
    async save(audit: Audit, now = Date.now()): Promise<void> {
      await db.updateTable('audits').set(write(audit, now)).where('id', '=', audit.id).execute();
    },

    /**
     * Writes a finished audit and, in the same transaction, opens the `audit.drift_found`
     * incident when it found drift (one alert until an audit finds none), or resolves it.
     */
    async finish(audit: Audit, now = Date.now()): Promise<void> {
      await db.transaction().execute(async (trx) => {
        await trx.updateTable('audits').set(write(audit, now)).where('id', '=', audit.id).execute();
        const incident = {
          type: 'audit.drift_found' as const,
          key: AUDIT_INCIDENT_KEY,
          details: { audit_id: audit.id, drift: audit.drift, repaired: audit.repaired },
        };
        if (audit.drift_total > 0) {
          await openIncident(
            trx,
            {
              ...incident,
              summary: `Audit ${audit.id} found ${audit.drift_total} customer(s) whose Inventory package does not match the CRM${audit.repair ? `; ${audit.repaired} sent through the pipeline again` : ''}`,
              occurrences: audit.drift_total,
            },
            now,
          );
        } else {
          await resolveIncident(
            trx,
            { ...incident, summary: `Audit ${audit.id} found the CRM and Inventory in agreement` },
            now,
          );
        }
      });
    },

    async get(id: string, now = Date.now()): Promise<Audit | undefined> {
      const row = await db
        .selectFrom('audits')
        .select(['report', 'state', 'updated_at'])
        .where('id', '=', id)
        .executeTakeFirst();
      return row && fromRow(row, now);
    },

    /** The latest audits, newest first. */
    async list(limit: number, now = Date.now()): Promise<Audit[]> {
      const rows = await db
        .selectFrom('audits')
        .select(['report', 'state', 'updated_at'])
        .orderBy('started_at', 'desc')
        .limit(limit)
        .execute();
      return rows.map((row) => fromRow(row, now));
    },

    /** Where the deliveries of `customerIds` stand (customers with none are left out). */
    async standings(customerIds: readonly string[]): Promise<Map<string, DeliveryStanding>> {
      if (customerIds.length === 0) return new Map();
      const rows = await db
        .selectFrom('deliveries')
        .select(['customer_id', 'state', 'customer_version'])
        .where('customer_id', 'in', customerIds)
        .execute();
      return new Map(
        rows.map((row) => [
          row.customer_id,
          { state: row.state, version: Number(row.customer_version) },
        ]),
      );
    },

    /**
     * Makes each customer's delivery want the CRM's state again, due now, with the package
     * request Inventory was seen to hold, as a new change (its `repairs` count goes up, so its
     * calls carry new idempotency keys), and notes it in the customer's timeline; one
     * transaction. A delivery an instance holds right now is left to it. Answers how many were
     * sent.
     */
    async resend(items: readonly Resend[], by: Actor, now = Date.now()): Promise<number> {
      if (items.length === 0) return 0;
      const sent = await db.transaction().execute(async (trx) => {
        const written = await trx
          .insertInto('deliveries')
          .values(
            items.map(({ state, packageRequestId, reason }) => {
              const changedAt = Date.parse(state.changed_at);
              return {
                customer_id: state.id,
                customer_name: state.name ?? '',
                customer_email: state.email,
                customer_version: state.version,
                customer_deleted_at:
                  state.deleted_at === null ? null : Date.parse(state.deleted_at),
                customer_created_at: changedAt,
                changed_at: changedAt,
                event_id: reason,
                source: 'resync',
                state: 'pending' as const,
                next_attempt_at: now,
                recorded_at: now,
                updated_at: now,
                package_request_id: packageRequestId,
                create_tried: packageRequestId === null ? 0 : 1,
                repairs: 1,
              };
            }),
          )
          .onConflict((conflict) =>
            conflict
              .column('customer_id')
              .doUpdateSet((eb) => ({
                ...newDesiredState(eb),
                package_request_id: eb.ref('excluded.package_request_id'),
                create_tried: eb.ref('excluded.create_tried'),
                repairs: sql<number>`deliveries.repairs + 1`,
                state: 'pending',
                attempts: 0,
                failing_since: null,
                next_attempt_at: now,
                updated_at: now,
              }))
              .where('deliveries.state', '!=', 'delivering'),
          )
          .returning('customer_id')
          .execute();
        const sentIds = new Set(written.map((row) => row.customer_id));
        const entries: NewTimelineEntry[] = items
          .filter((item) => sentIds.has(item.state.id))
          .map((item) => ({
            customer_id: item.state.id,
            at: now,
            kind: 'action',
            result: 'done',
            action: 'resync',
            source: `${by.who} (${item.reason})`,
            instance: by.instance,
            version: item.state.version,
          }));
        await insertTimeline(trx, entries);
        return sentIds.size;
      });
      if (items.some((item) => item.state.deleted_at !== null)) database.scrubSoon?.();
      return sent;
    },
  };
}

export type AuditsRepository = ReturnType<typeof createAuditsRepository>;
