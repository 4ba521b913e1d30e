import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Audit } from '../../src/contracts/audit.js';
import { startAlertReceiver } from '../support/alert-receiver.js';
import {
  createCustomers,
  usePlatform,
  waitUntil,
  type StartedPlatform,
} from '../support/platform.js';

const start = usePlatform();

const json = { 'content-type': 'application/json' };

/** Whether `count` customers have deliveries, every one of them delivered. */
async function allDelivered({ integration }: StartedPlatform, count: number): Promise<boolean> {
  const rows = await integration.database.db.selectFrom('deliveries').select('state').execute();
  return rows.length === count && rows.every((row) => row.state === 'delivered');
}

/** Follows audit `id` until it is no longer running; answers its report. */
async function auditEnded(url: string, id: string): Promise<Audit> {
  let report: Audit | undefined;
  await waitUntil(
    async () => {
      report = (await (await fetch(`${url}/api/audits/${id}`)).json()) as Audit;
      return report.state !== 'running';
    },
    20_000,
    `audit ${id} to end`,
  );
  return report!;
}

/** Runs an audit through the admin API to its end; answers its report. */
async function audit(url: string, body: unknown = {}): Promise<Audit> {
  const started = await fetch(`${url}/api/audits`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify(body),
  });
  expect(started.status).toBe(202);
  const { id } = (await started.json()) as Audit;
  expect(started.headers.get('location')).toBe(`/api/audits/${id}`);
  const report = await auditEnded(url, id);
  expect(report.error ?? report.state).toBe('finished');
  return report;
}

/**
 * Drift planted in Inventory's database as a restore from an older backup leaves it (each row and
 * the idempotency records about it as they were before), and a request someone else made.
 */
async function plantDrift(
  platform: StartedPlatform,
  ids: { missing: string; stale: string; deleted: string },
) {
  const { db } = platform.upstreams.inventory.database;
  const requestOf = (customerId: string) =>
    db
      .selectFrom('package_requests')
      .selectAll()
      .where('customer_id', '=', customerId)
      .executeTakeFirstOrThrow();
  const lost = await requestOf(ids.missing);
  await db.deleteFrom('idempotency_keys').where('package_request_id', '=', lost.id).execute();
  await db.deleteFrom('package_requests').where('id', '=', lost.id).execute();
  await db
    .updateTable('package_requests')
    .set({ recipient_name: 'Name Before', customer_version: 1 })
    .where('customer_id', '=', ids.stale)
    .execute();
  await db
    .updateTable('package_requests')
    .set({ status: 'pending', recipient_name: 'Back From Backup' })
    .where('customer_id', '=', ids.deleted)
    .execute();
  const stranger = randomUUID();
  const made = await fetch(`${platform.upstreams.inventoryUrl}/package-requests`, {
    method: 'POST',
    headers: { ...json, 'idempotency-key': `elsewhere:${stranger}` },
    body: JSON.stringify({ customer_id: stranger, recipient_name: 'Someone Else' }),
  });
  expect(made.status).toBe(201);
  return { stranger, lostRequest: lost.id };
}

describe('audit', () => {
  it('finds each kind of drift planted in Inventory, repairs what the pipeline can, and then finds only what needs a person', async () => {
    const platform = await start({ ALERT_RETRY_BASE_MS: '50' });
    const { upstreams, url } = platform;
    const receiver = await startAlertReceiver(platform.integration);
    const ids = await createCustomers(upstreams.crmUrl, 8, { prefix: 'audit' });
    const [missing, stale, deleted] = ids as [string, string, string];
    const renamed = await fetch(`${upstreams.crmUrl}/customers/${stale}`, {
      method: 'PATCH',
      headers: json,
      body: JSON.stringify({ name: 'Name After' }),
    });
    expect(renamed.status).toBe(200);
    expect(
      (await fetch(`${upstreams.crmUrl}/customers/${deleted}`, { method: 'DELETE' })).status,
    ).toBe(204);
    await waitUntil(
      async () =>
        (await allDelivered(platform, 8)) &&
        (
          await upstreams.inventory.database.db
            .selectFrom('package_requests')
            .select('id')
            .execute()
        ).length === 8 &&
        (
          (await fetch(`${url}/api/customers/${stale}/timeline`).then((r) => r.json())) as {
            delivery: { applied_version: number };
          }
        ).delivery.applied_version === 2,
      15_000,
      'every change delivered',
    );

    const clean = await audit(url);
    expect(clean).toMatchObject({
      customers_checked: 8,
      requests_checked: 8,
      drift_total: 0,
      progress: 1,
    });

    const { stranger } = await plantDrift(platform, { missing, stale, deleted });
    const found = await audit(url);
    expect(found.drift).toEqual({
      missing_package: 1,
      duplicate_packages: 0,
      stale_recipient: 1,
      pending_after_deletion: 1,
      unknown_customer: 1,
    });
    expect(found.drift_total).toBe(4);
    expect(found.repaired).toBe(0);
    expect(found.examples.missing_package.map((e) => e.customer_id)).toEqual([missing]);
    expect(found.examples.stale_recipient[0]).toMatchObject({ customer_id: stale });
    expect(found.examples.stale_recipient[0]!.detail).toMatch(/version 1 \(Name Before.*version 2/);
    expect(found.examples.pending_after_deletion.map((e) => e.customer_id)).toEqual([deleted]);
    expect(found.examples.unknown_customer.map((e) => e.customer_id)).toEqual([stranger]);

    const repaired = await audit(url, { repair: true });
    expect(repaired).toMatchObject({ drift_total: 4, repaired: 3 });
    await waitUntil(() => allDelivered(platform, 8), 15_000, 'the repairs delivered');

    const after = await audit(url);
    expect(after.drift).toMatchObject({
      missing_package: 0,
      stale_recipient: 0,
      pending_after_deletion: 0,
      unknown_customer: 1,
    });
    const { db } = upstreams.inventory.database;
    const requests = await db
      .selectFrom('package_requests')
      .selectAll()
      .where('customer_id', 'in', [missing, stale, deleted])
      .execute();
    const of = (customerId: string) => requests.filter((r) => r.customer_id === customerId);
    expect(of(missing)).toHaveLength(1);
    expect(of(missing)[0]).toMatchObject({ status: 'pending', recipient_name: 'Customer 0' });
    expect(of(stale)[0]).toMatchObject({
      status: 'pending',
      recipient_name: 'Name After',
      customer_version: 2,
    });
    expect(of(deleted)[0]).toMatchObject({ status: 'cancelled', recipient_name: null });

    // The repair shows in the customer's timeline, before the attempt that made the package again.
    const timeline = (await (await fetch(`${url}/api/customers/${missing}/timeline`)).json()) as {
      entries: {
        kind: string;
        action: string | null;
        source: string | null;
        outcome: string | null;
      }[];
    };
    const resync = timeline.entries.findIndex((e) => e.action === 'resync');
    expect(timeline.entries[resync]!.source).toMatch(/audit [0-9a-f]{8}.*missing_package/);
    expect(
      timeline.entries.slice(resync).some((e) => e.kind === 'attempt' && e.outcome === 'created'),
    ).toBe(true);

    // One alert while audits keep finding drift, and its resolution once one finds none.
    const cancelled = await fetch(
      `${upstreams.inventoryUrl}/package-requests/${found.examples.unknown_customer[0]!.package_request_ids[0]}/cancel`,
      { method: 'POST' },
    );
    expect(cancelled.status).toBe(200);
    expect((await audit(url)).drift_total).toBe(0);
    await waitUntil(
      () => receiver.ofType('audit.drift_found.resolved').length === 1,
      10_000,
      'the resolution alert',
    );
    await receiver.close();
    const [opened] = receiver.ofType('audit.drift_found');
    expect(receiver.ofType('audit.drift_found')).toHaveLength(1);
    expect(opened!.data).toMatchObject({
      summary: `Audit ${found.id} found 4 customer(s) whose Inventory package does not match the CRM`,
      details: { audit_id: found.id, drift: found.drift },
    });
    expect(receiver.ofType('audit.drift_found.resolved')[0]!.data).toMatchObject({
      incident_id: (opened!.data as { incident_id: string }).incident_id,
      occurrences: 4 + 4 + 1,
    });
  });

  it('resyncs one customer from what the CRM holds now, and says 404 for one it never had', async () => {
    const platform = await start();
    const { upstreams, url } = platform;
    const [id] = await createCustomers(upstreams.crmUrl, 1, { prefix: 'one' });
    const renamed = await fetch(`${upstreams.crmUrl}/customers/${id}`, {
      method: 'PATCH',
      headers: json,
      body: JSON.stringify({ name: 'Name After' }),
    });
    expect(renamed.status).toBe(200);
    const inventory = upstreams.inventory.database.db;
    const recipient = async () =>
      (await inventory.selectFrom('package_requests').select('recipient_name').executeTakeFirst())
        ?.recipient_name;
    await waitUntil(
      async () => (await recipient()) === 'Name After',
      10_000,
      'the change delivered',
    );
    await waitUntil(() => allDelivered(platform, 1), 10_000, 'the customer delivered');
    // Inventory restored from before the change; its stored answers (idempotency) survive.
    await inventory
      .updateTable('package_requests')
      .set({ recipient_name: 'Customer 0', customer_version: 1 })
      .execute();
    const answer = await fetch(`${url}/api/customers/${id!.toUpperCase()}/resync`, {
      method: 'POST',
    });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({
      customer_id: id,
      version: 2,
      deleted: false,
      sent: true,
    });
    await waitUntil(async () => (await recipient()) === 'Name After', 10_000, 'the change again');
    const unknown = await fetch(`${url}/api/customers/${randomUUID()}/resync`, { method: 'POST' });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { detail: string }).detail).toMatch(/never had a customer/);
  });

  it('refuses a malformed audit request and an unknown audit id without starting anything', async () => {
    const { url } = await start();
    const bad = await fetch(`${url}/api/audits`, {
      method: 'POST',
      headers: json,
      body: '{"repair":"yes"}',
    });
    expect(bad.status).toBe(400);
    expect((await fetch(`${url}/api/audits/nope`)).status).toBe(400);
    expect((await fetch(`${url}/api/audits/${randomUUID()}`)).status).toBe(404);
    expect(await (await fetch(`${url}/api/audits`)).json()).toEqual([]);
  });

  it('answers 502 when Inventory does not answer a resync, and an audit then fails saying why', async () => {
    const platform = await start();
    const { upstreams, url } = platform;
    const [id] = await createCustomers(upstreams.crmUrl, 1, { prefix: 'down' });
    await waitUntil(() => allDelivered(platform, 1), 10_000, 'the customer delivered');
    upstreams.proxy.answer = () => ({ status: 503, body: { detail: 'down for maintenance' } });
    const resync = await fetch(`${url}/api/customers/${id}/resync`, { method: 'POST' });
    expect(resync.status).toBe(502);
    expect(await resync.json()).toMatchObject({
      code: 'upstream_unavailable',
      detail: expect.stringMatching(/HTTP 503: down for maintenance\. Try again once both answer/),
    });
    const started = await fetch(`${url}/api/audits`, { method: 'POST' });
    expect(started.status).toBe(202);
    const { id: auditId } = (await started.json()) as Audit;
    const report = await auditEnded(url, auditId);
    expect(report).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/HTTP 503.*start the audit again/),
    });
    // Nothing was sent again.
    const rows = await platform.integration.database.db
      .selectFrom('deliveries')
      .select(['state', 'repairs'])
      .execute();
    expect(rows).toEqual([{ state: 'delivered', repairs: 0 }]);
  });
});
