import { describe, expect, it } from 'vitest';
import { mip } from '../../support/mip.js';
import {
  createCustomers,
  usePlatform,
  waitUntil,
  type StartedPlatform,
} from '../../support/platform.js';

const start = usePlatform();

const delivered = async ({ integration }: StartedPlatform, count: number) => {
  const rows = await integration.database.db.selectFrom('deliveries').select('state').execute();
  return rows.length === count && rows.every((row) => row.state === 'delivered');
};

describe('mip audit', () => {
  it('exits 0 when the CRM and Inventory agree, 1 with the drift when not, and --repair mends it', async () => {
    const platform = await start();
    const { upstreams, url } = platform;
    const ids = await createCustomers(upstreams.crmUrl, 3, { prefix: 'cli-audit' });
    await waitUntil(() => delivered(platform, 3), 10_000, 'the customers delivered');

    const clean = await mip(url, ['audit']);
    expect(clean.code).toBe(0);
    expect(clean.stdout).toMatch(/3 customers and 3 welcome package requests compared\.\nNo drift/);

    // A restore of Inventory from before one customer's package was made.
    const inventory = upstreams.inventory.database.db;
    const lost = await inventory
      .selectFrom('package_requests')
      .select('id')
      .where('customer_id', '=', ids[1]!)
      .executeTakeFirstOrThrow();
    await inventory
      .deleteFrom('idempotency_keys')
      .where('package_request_id', '=', lost.id)
      .execute();
    await inventory.deleteFrom('package_requests').where('id', '=', lost.id).execute();

    const found = await mip(url, ['audit', '--json']);
    expect(found.code).toBe(1);
    expect(found.stderr).toMatch(/^mip: 1 customer\(s\) with drift\n$/m);
    const report = JSON.parse(found.stdout) as {
      drift: Record<string, number>;
      examples: Record<string, { customer_id: string }[]>;
    };
    expect(report.drift.missing_package).toBe(1);
    expect(report.examples.missing_package?.[0]?.customer_id).toBe(ids[1]);

    const repaired = await mip(url, ['audit', '--repair']);
    expect(repaired.code).toBe(1);
    expect(repaired.stdout).toContain(
      `missing package: 1\n    ${ids[1]}  Inventory has no welcome package request`,
    );
    expect(repaired.stdout).toMatch(/Repair: 1 customer\(s\) sent through the pipeline again/);
    await waitUntil(
      async () =>
        (await inventory.selectFrom('package_requests').select('id').execute()).length === 3,
      10_000,
      'the package made again',
    );
    await waitUntil(() => delivered(platform, 3), 10_000, 'the repair delivered');
    expect((await mip(url, ['audit'])).code).toBe(0);
  });
});

describe('mip resync --customer', () => {
  it('sends one customer, named by id or email, through the pipeline again; refuses to guess between --since and --customer', async () => {
    const platform = await start();
    const { upstreams, url } = platform;
    const [id] = await createCustomers(upstreams.crmUrl, 1, { prefix: 'cli-resync' });
    await waitUntil(() => delivered(platform, 1), 10_000, 'the customer delivered');

    const byEmail = await mip(url, [
      'resync',
      '--customer',
      'cli-resync-0@example.com',
      '--crm-url',
      upstreams.crmUrl,
    ]);
    expect(byEmail).toMatchObject({ code: 0, stderr: '' });
    expect(byEmail.stdout).toMatch(
      new RegExp(
        `^Sending customer ${id} \\(version 1\\) through the pipeline again for package request `,
      ),
    );

    const trace = JSON.parse((await mip(url, ['trace', id!, '--json'])).stdout) as {
      entries: { action: string | null; source: string | null }[];
    };
    expect(trace.entries.filter((e) => e.action === 'resync').map((e) => e.source)).toEqual([
      'admin (resync)',
    ]);

    for (const args of [['resync'], ['resync', '--since', '0', '--customer', id!]]) {
      const refused = await mip(url, args);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/give exactly one of --since/);
    }
    const unknown = await mip(url, [
      'resync',
      '--customer',
      '00000000-0000-4000-8000-000000000000',
    ]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/never had a customer/);
  });
});
