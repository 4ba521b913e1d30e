import type { Kysely, Selectable } from 'kysely';
import type { AlertEndpoint, NewAlertEndpointAnswer } from '../../contracts/alerts.js';
import { insertUniqueEndpoint } from '../../core/webhooks/unique-endpoint.js';
import { HttpProblem } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { generateSecret } from '../../core/webhooks/signing.js';
import type { IntegrationTables } from '../migrations.js';

type Db = Kysely<IntegrationTables>;
type EndpointRow = Selectable<IntegrationTables['alert_endpoints']>;

const toEndpoint = (row: EndpointRow): AlertEndpoint => ({
  id: row.id,
  url: row.url,
  origin: row.configured ? 'config' : 'api',
  created_at: new Date(row.created_at).toISOString(),
});

/** Where alerts go: endpoints registered through the admin API, and those of ALERT_WEBHOOK_URLS. */
export function createAlertEndpoints(db: Db) {
  return {
    /** Registers `url` with a new signing secret, shown only in this answer; 409 if it exists. */
    async create(url: string, now = Date.now()): Promise<NewAlertEndpointAnswer> {
      const row: EndpointRow = {
        id: newId(),
        url,
        secret: generateSecret(),
        configured: 0,
        created_at: now,
      };
      await insertUniqueEndpoint(
        url,
        'An alert endpoint',
        () => db.insertInto('alert_endpoints').values(row).execute(),
        async () =>
          (
            await db
              .selectFrom('alert_endpoints')
              .select('id')
              .where('url', '=', url)
              .executeTakeFirst()
          )?.id,
      );
      return { ...toEndpoint(row), secret: row.secret };
    },

    /** Every endpoint, oldest first, without secrets. */
    async list(): Promise<AlertEndpoint[]> {
      const rows = await db
        .selectFrom('alert_endpoints')
        .selectAll()
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(toEndpoint);
    },

    /** Deletes the endpoint (404 if none); its alerts not yet sent are cancelled. */
    async delete(id: string, now = Date.now()): Promise<void> {
      await db.transaction().execute(async (trx) => {
        const deleted = await trx
          .deleteFrom('alert_endpoints')
          .where('id', '=', id)
          .executeTakeFirst();
        if (Number(deleted.numDeletedRows) === 0) {
          throw new HttpProblem(
            404,
            'not_found',
            `No alert endpoint has id ${id}; GET /api/alert-endpoints lists them.`,
          );
        }
        await trx
          .updateTable('alert_outbox')
          .set({ state: 'cancelled', last_error: 'endpoint deleted', updated_at: now })
          .where('endpoint_id', '=', id)
          .where('state', '=', 'pending')
          .execute();
      });
    },

    /**
     * Puts the endpoints of ALERT_WEBHOOK_URLS in step with the setting at start-up: each listed
     * URL is an endpoint signed with `secret` (an endpoint registered through the API with the
     * same URL is taken over); configured endpoints no longer listed are deleted.
     */
    async registerConfigured(
      urls: string[],
      secret: string | undefined,
      now = Date.now(),
    ): Promise<void> {
      await db.transaction().execute(async (trx) => {
        const stale = trx.deleteFrom('alert_endpoints').where('configured', '=', 1);
        await (urls.length > 0 ? stale.where('url', 'not in', urls) : stale).execute();
        if (urls.length === 0 || secret === undefined) return;
        await trx
          .insertInto('alert_endpoints')
          .values(urls.map((url) => ({ id: newId(), url, secret, configured: 1, created_at: now })))
          .onConflict((conflict) => conflict.column('url').doUpdateSet({ secret, configured: 1 }))
          .execute();
      });
    },
  };
}

export type AlertEndpoints = ReturnType<typeof createAlertEndpoints>;
