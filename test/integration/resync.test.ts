import { describe, expect, it } from 'vitest';
import { mip } from '../support/mip.js';
import {
  createCustomers,
  packageRequestsByCustomer,
  usePlatform,
  waitUntil,
} from '../support/platform.js';

const start = usePlatform();

describe('resync', () => {
  it('reads the CRM feed again from a position or a time: lost customers are delivered again, nothing twice', async () => {
    const { upstreams, integration, url } = await start();
    const { db } = integration.database;
    const delivered = async (ids: string[]) =>
      (
        await db
          .selectFrom('deliveries')
          .select('customer_id')
          .where('customer_id', 'in', ids)
          .where('state', '=', 'delivered')
          .execute()
      ).length === ids.length;
    /** What a database restored from an older backup lacks: these customers' rows. */
    const forget = (ids: string[]) =>
      db.deleteFrom('deliveries').where('customer_id', 'in', ids).execute();

    const early = await createCustomers(upstreams.crmUrl, 4, { prefix: 'early' });
    await waitUntil(() => delivered(early), 10_000, 'the early customers');
    const midpoint = new Date().toISOString();
    const late = await createCustomers(upstreams.crmUrl, 3, { prefix: 'late' });
    await waitUntil(() => delivered(late), 10_000, 'the late customers');

    // Lost rows of the later customers: a resync since the time they came back reads them again.
    await forget(late);
    const byTime = await mip(url, ['resync', '--since', midpoint]);
    expect(byTime).toMatchObject({ code: 0, stderr: '' });
    expect(byTime.stdout).toMatch(
      /^Reading the CRM feed again from position 4 up to 7; newer customer states will be delivered/,
    );
    await waitUntil(() => delivered(late), 10_000, 'the late customers, again');

    // From the start: every customer is read again; only the lost ones are news.
    await forget(early.slice(0, 2));
    const fromStart = await mip(url, ['resync', '--since', '0', '--json']);
    expect(JSON.parse(fromStart.stdout)).toEqual({ from: 0, until: 7 });
    await waitUntil(() => delivered(early), 10_000, 'the lost early customers, again');
    await waitUntil(
      async () => JSON.parse((await mip(url, ['status', '--json'])).stdout).resync === null,
      10_000,
      'the resync done',
    );

    const packages = await packageRequestsByCustomer(upstreams.inventory);
    expect(packages.size).toBe(7);
    expect([...packages.values()].every((count) => count === 1)).toBe(true);
    // Each customer's timeline names the resync that read it again.
    const timeline = JSON.parse((await mip(url, ['trace', late[0]!, '--json'])).stdout) as {
      entries: { kind: string; action: string | null; all_customers: boolean }[];
    };
    expect(timeline.entries).toContainEqual(
      expect.objectContaining({ kind: 'action', action: 'resync', all_customers: true }),
    );
  }, 60_000);

  it('in webhook mode, reads again the events push had brought, which the feed repair otherwise skips', async () => {
    const { upstreams, integration, url } = await start({
      SYNC_MODE: 'webhook',
      GAP_REPAIR_MS: '300',
    });
    const status = async () => JSON.parse((await mip(url, ['status', '--json'])).stdout);
    await waitUntil(
      async () => (await status()).webhook?.registered === true,
      10_000,
      'registration',
    );
    const { db } = integration.database;
    const ids = await createCustomers(upstreams.crmUrl, 3, { prefix: 'pushed' });
    const delivered = async () =>
      (
        await db
          .selectFrom('deliveries')
          .select('customer_id')
          .where('state', '=', 'delivered')
          .execute()
      ).length === 3;
    await waitUntil(delivered, 10_000, 'the pushed customers');
    // The feed repair has moved over what push brought: it would not read those events again.
    await waitUntil(async () => (await status()).cursor === 3, 10_000, 'the cursor past them');
    await db.deleteFrom('deliveries').execute();

    expect(JSON.parse((await mip(url, ['resync', '--since', '0', '--json'])).stdout)).toEqual({
      from: 0,
      until: 3,
    });
    await waitUntil(delivered, 10_000, 'the pushed customers, read again from the feed');
    const packages = await packageRequestsByCustomer(upstreams.inventory);
    expect(new Set(packages.keys())).toEqual(new Set(ids));
    expect([...packages.values()].every((count) => count === 1)).toBe(true);
  }, 60_000);

  it('refuses neither or both of a position and a time, and a time it cannot read', async () => {
    const { integration, url } = await start();
    const post = (body: unknown) =>
      integration.app.inject({
        method: 'POST',
        url: '/api/resync',
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify(body),
      });
    expect((await post({})).statusCode).toBe(400);
    expect((await post({ since_position: 0, since: '2026-12-03T00:00:00Z' })).json().detail).toBe(
      'Give exactly one of since_position (a feed position, 0 for the start) or since (a time such as 2026-12-03T09:00:00Z).',
    );
    expect((await post({ since_position: -1 })).statusCode).toBe(400);
    const bad = await mip(url, ['resync', '--since', 'yesterday']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('It must be a feed position, or a time such as');
  }, 30_000);
});
