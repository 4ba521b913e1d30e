import { describe, expect, it } from 'vitest';
import { mip } from '../support/mip.js';
import {
  createCustomers,
  packageRequestsByCustomer,
  usePlatform,
  waitUntil,
} from '../support/platform.js';

const start = usePlatform();

const MAX_RPS = 10;

describe('pause and resume', () => {
  it('records customers but sends nothing while paused, then drains the backlog at INVENTORY_MAX_RPS once resumed', async () => {
    // One customer per call, so the calls to Inventory are as many as the customers.
    const { upstreams, integration, url } = await start({
      INVENTORY_MAX_RPS: String(MAX_RPS),
      DELIVERY_BATCH_SIZE: '1',
    });
    const { db } = integration.database;
    const recorded = async () =>
      Number(
        (
          await db
            .selectFrom('deliveries')
            .select((eb) => eb.fn.countAll<number>().as('count'))
            .executeTakeFirstOrThrow()
        ).count,
      );

    const paused = await mip(url, ['pause']);
    expect(paused).toMatchObject({ code: 0, stderr: '' });
    expect(paused.stdout).toMatch(/^Paused: nothing is sent to Inventory on any instance since /);
    expect((await mip(url, ['pause'])).stdout).toMatch(/^Already paused: /);

    const ids = await createCustomers(upstreams.crmUrl, 25, { prefix: 'paused' });
    await waitUntil(async () => (await recorded()) === 25, 10_000, '25 customers recorded');
    // Several polls and idle ticks later, still nothing sent and nothing given up on.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(upstreams.proxy.calls).toEqual([]);
    const status = await mip(url, ['status', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({
      paused: { by: 'admin' },
      backlog: 25,
      deliveries: { pending: 25, dead: 0, delivered: 0 },
    });
    expect((await mip(url, ['status'])).stdout).toMatch(
      /^delivery\s+PAUSED since \S+ by admin \(backlog 25\)$/m,
    );

    const resumed = await mip(url, ['resume']);
    expect(resumed.stdout).toBe('Resumed: delivering to Inventory (25 deliveries waiting).\n');
    await waitUntil(
      async () => (await packageRequestsByCustomer(upstreams!.inventory)).size === 25,
      20_000,
      'the backlog delivered',
    );
    expect(new Set((await packageRequestsByCustomer(upstreams.inventory)).keys())).toEqual(
      new Set(ids),
    );
    // However the calls fell, no second held more than INVENTORY_MAX_RPS of them.
    const times = upstreams.proxy.calls.map((call) => call.at).sort((a, b) => a - b);
    expect(times.length).toBeGreaterThanOrEqual(25);
    const busiestSecond = Math.max(
      ...times.map((start) => times.filter((at) => at >= start && at < start + 1_000).length),
    );
    expect(busiestSecond).toBeLessThanOrEqual(MAX_RPS + 1);
    expect((await mip(url, ['status', '--json'])).stdout).toContain('"paused": null');
  }, 60_000);
});
