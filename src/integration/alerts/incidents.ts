import { sql, type Kysely } from 'kysely';
import {
  INCIDENT_ALERT_TYPES,
  type AlertType,
  type AlertWebhook,
  type IncidentType,
} from '../../contracts/alerts.js';
import { newId } from '../../core/ids.js';
import type { IntegrationTables } from '../migrations.js';

/** The database or a transaction on it: an alert is written with the change it is about. */
type Db = Kysely<IntegrationTables>;

/** A condition worth telling an operator about, as a detector reports it. */
export interface IncidentReport {
  /** The alert that opens the incident, e.g. `audit.drift_found`. */
  type: IncidentType;
  /** What it is about: one open incident per type and key, e.g. `inventory`. */
  key: string;
  /** One sentence for a person. */
  summary: string;
  /** Occurrences this report counts (e.g. deliveries dead-lettered). Default 1. */
  occurrences?: number;
  /** Facts for the alert's `data.details`. Default none. */
  details?: Record<string, unknown>;
}

/**
 * Puts one alert in the outbox for every registered endpoint, in the caller's transaction, so it
 * is sent exactly when the change it reports commits, and survives a crash after that.
 */
async function enqueueAlert(
  db: Db,
  type: AlertType,
  data: AlertWebhook['data'],
  now: number,
): Promise<void> {
  const endpoints = await db.selectFrom('alert_endpoints').select('id').execute();
  if (endpoints.length === 0) return;
  const alertId = newId();
  const webhook: AlertWebhook = { type, timestamp: new Date(now).toISOString(), data };
  const body = JSON.stringify(webhook);
  await db
    .insertInto('alert_outbox')
    .values(
      endpoints.map((endpoint) => ({
        alert_id: alertId,
        endpoint_id: endpoint.id,
        type,
        body,
        state: 'pending' as const,
        attempts: 0,
        created_at: now,
        next_attempt_at: now,
        updated_at: now,
      })),
    )
    .execute();
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Opens an incident and queues its alert, unless one of this type and key is already open (on
 * any instance): then only its occurrences grow, and nothing is sent. Call it inside the
 * transaction that makes the change; answers true when this call opened the incident.
 *
 * This is the entry point for every detector, the audit included:
 * `openIncident(trx, { type: 'audit.drift_found', key: 'inventory', summary, details })`.
 */
export async function openIncident(
  db: Db,
  report: IncidentReport,
  now = Date.now(),
): Promise<boolean> {
  const occurrences = report.occurrences ?? 1;
  // Two rounds at most: an incident resolved between our insert and our update is over, so the
  // second insert opens a new one.
  for (let round = 0; round < 2; round += 1) {
    const id = newId();
    const opened = await db
      .insertInto('alert_incidents')
      .values({
        id,
        type: report.type,
        key: report.key,
        opened_at: now,
        closed_at: null,
        occurrences,
        last_seen_at: now,
      })
      .onConflict((conflict) => conflict.doNothing())
      .returning('id')
      .executeTakeFirst();
    if (opened) {
      await enqueueAlert(
        db,
        report.type,
        {
          incident_id: id,
          key: report.key,
          summary: report.summary,
          opened_at: iso(now),
          resolved_at: null,
          occurrences,
          details: report.details ?? {},
        },
        now,
      );
      return true;
    }
    const counted = await db
      .updateTable('alert_incidents')
      .set({ occurrences: sql<number>`occurrences + ${occurrences}`, last_seen_at: now })
      .where('type', '=', report.type)
      .where('key', '=', report.key)
      .where('closed_at', 'is', null)
      .executeTakeFirst();
    if (Number(counted.numUpdatedRows) > 0) return false;
  }
  return false;
}

/**
 * Notes that the condition of an open incident still holds, as an instance sees it now (without
 * counting an occurrence); answers false when no such incident is open.
 */
export async function confirmIncident(
  db: Db,
  type: IncidentType,
  key: string,
  now = Date.now(),
): Promise<boolean> {
  const seen = await db
    .updateTable('alert_incidents')
    .set({ last_seen_at: now })
    .where('type', '=', type)
    .where('key', '=', key)
    .where('closed_at', 'is', null)
    .executeTakeFirst();
  return Number(seen.numUpdatedRows) > 0;
}

/**
 * Closes the open incident of this type and key, if any, and queues its recovery alert; answers
 * true when this call closed it (of several instances, one does). With `seenBefore`, only if no
 * instance has seen the condition since then.
 */
export async function resolveIncident(
  db: Db,
  report: Pick<IncidentReport, 'type' | 'key' | 'summary' | 'details'>,
  now = Date.now(),
  seenBefore?: number,
): Promise<boolean> {
  let closing = db
    .updateTable('alert_incidents')
    .set({ closed_at: now })
    .where('type', '=', report.type)
    .where('key', '=', report.key)
    .where('closed_at', 'is', null);
  if (seenBefore !== undefined) closing = closing.where('last_seen_at', '<', seenBefore);
  const closed = await closing.returning(['id', 'opened_at', 'occurrences']).executeTakeFirst();
  if (!closed) return false;
  await enqueueAlert(
    db,
    INCIDENT_ALERT_TYPES[report.type],
    {
      incident_id: closed.id,
      key: report.key,
      summary: report.summary,
      opened_at: iso(closed.opened_at),
      resolved_at: iso(now),
      occurrences: closed.occurrences,
      details: report.details ?? {},
    },
    now,
  );
  return true;
}
