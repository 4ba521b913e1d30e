import { isoOrNull } from '../core/iso.js';
import { newId } from '../core/ids.js';
import type { Kysely, Selectable } from 'kysely';
import { insertUniqueEndpoint } from '../core/webhooks/unique-endpoint.js';
import { HttpProblem } from '../core/errors.js';
import { generateSecret } from '../core/webhooks/signing.js';
import type { WebhookEndpoint, WebhookSecrets } from '../contracts/webhook-endpoints.js';
import type { CrmTables } from './migrations.js';
import type { SecretsKeyring } from './secrets-at-rest.js';
import { WebhookMessages } from './webhook-messages.js';

/** How long the previous secret still signs after a rotation, in ms. */
export const SECRET_ROTATION_GRACE_MS = 24 * 3_600_000;

type EndpointRow = Selectable<CrmTables['webhook_endpoints']>;

function toEndpoint(row: Omit<EndpointRow, 'seq'>): WebhookEndpoint {
  return {
    id: row.id,
    url: row.url,
    status: row.disabled_at === null ? 'active' : 'disabled',
    disabled_reason: row.disabled_reason,
    failing_since: isoOrNull(row.failing_since),
    created_at: isoOrNull(row.created_at)!,
  };
}

/** The CRM's webhook subscriptions; their secrets are stored sealed by `keyring`. */
export class WebhookEndpoints {
  /** The endpoints' messages: listed, replayed, caught up on re-enabling. */
  readonly messages: WebhookMessages;

  constructor(
    private readonly db: Kysely<CrmTables>,
    private readonly keyring: SecretsKeyring,
  ) {
    this.messages = new WebhookMessages(db);
  }

  async create(url: string): Promise<WebhookEndpoint & { secret: string }> {
    const id = newId();
    const secret = generateSecret();
    const row: Omit<EndpointRow, 'seq'> = {
      id,
      url,
      secret: this.keyring.seal(secret, id),
      previous_secret: null,
      previous_secret_expires_at: null,
      created_at: Date.now(),
      disabled_at: null,
      disabled_reason: null,
      failing_since: null,
    };
    await insertUniqueEndpoint(
      url,
      'An endpoint',
      () => this.db.insertInto('webhook_endpoints').values(row).execute(),
      async () =>
        (
          await this.db
            .selectFrom('webhook_endpoints')
            .select('id')
            .where('url', '=', url)
            .executeTakeFirst()
        )?.id,
    );
    return { ...toEndpoint(row), secret };
  }

  async list(): Promise<WebhookEndpoint[]> {
    const rows = await this.db.selectFrom('webhook_endpoints').selectAll().orderBy('seq').execute();
    return rows.map(toEndpoint);
  }

  async get(id: string): Promise<WebhookEndpoint> {
    return toEndpoint(await this.row(id));
  }

  async secrets(id: string, now = Date.now()): Promise<WebhookSecrets> {
    const row = await this.row(id);
    const previousValid =
      row.previous_secret !== null && (row.previous_secret_expires_at ?? 0) > now;
    return {
      secret: this.keyring.open(row.secret, id),
      previous_secret: previousValid ? this.keyring.open(row.previous_secret!, id) : null,
      previous_secret_expires_at: previousValid ? isoOrNull(row.previous_secret_expires_at) : null,
    };
  }

  /** A new secret; the old one keeps signing (as a second signature) for the grace period. */
  async rotateSecret(id: string, now = Date.now()): Promise<WebhookSecrets> {
    const row = await this.row(id);
    await this.db
      .updateTable('webhook_endpoints')
      .set({
        secret: this.keyring.seal(generateSecret(), id),
        // Sealed anew: under this CRM's current key even if the row was written under another.
        previous_secret: this.keyring.seal(this.keyring.open(row.secret, id), id),
        previous_secret_expires_at: now + SECRET_ROTATION_GRACE_MS,
      })
      .where('id', '=', id)
      .execute();
    return this.secrets(id, now);
  }

  /** Deletes the endpoint; its messages not yet delivered are cancelled. */
  async delete(id: string): Promise<void> {
    await this.row(id);
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('webhook_endpoints').where('id', '=', id).execute();
      await trx
        .updateTable('webhook_messages')
        .set({ state: 'cancelled', updated_at: Date.now() })
        .where('endpoint_id', '=', id)
        .where('state', '=', 'pending')
        .execute();
    });
  }

  /**
   * Re-enables a disabled endpoint and catches it up from where it stopped: what was cancelled
   * when it was disabled, and what was recorded while it was, is sent. An active endpoint is left
   * as it is.
   */
  async enable(id: string): Promise<WebhookEndpoint> {
    const row = await this.row(id);
    if (row.disabled_at === null) return toEndpoint(row);
    await this.db.transaction().execute(async (trx) => {
      const enabled = await trx
        .updateTable('webhook_endpoints')
        .set({ disabled_at: null, disabled_reason: null, failing_since: null })
        .where('id', '=', id)
        .where('disabled_at', 'is not', null)
        .executeTakeFirst();
      // Another enable got there first: it caught the endpoint up.
      if (Number(enabled.numUpdatedRows) === 0) return;
      await this.messages.catchUp(trx, row);
    });
    return this.get(id);
  }

  /** Throws 404 when no endpoint has `id`. */
  async mustExist(id: string): Promise<void> {
    await this.row(id);
  }

  async attempts(id: string, limit: number) {
    await this.row(id);
    const rows = await this.db
      .selectFrom('webhook_attempts')
      .selectAll()
      .where('endpoint_id', '=', id)
      .orderBy('seq', 'desc')
      .limit(limit)
      .execute();
    return rows.map((row) => ({
      event_id: row.event_id,
      attempted_at: isoOrNull(row.attempted_at)!,
      status: row.status,
      error: row.error,
      duration_ms: row.duration_ms,
    }));
  }

  private async row(id: string): Promise<EndpointRow> {
    const row = await this.db
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new HttpProblem(404, 'not_found', `No webhook endpoint has id ${id}.`);
    return row;
  }
}
