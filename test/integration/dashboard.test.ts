import fs from 'node:fs';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, afterEach, expect, it } from 'vitest';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import type { TestApp } from '../support/apps.js';
import { launchChromium } from '../support/browser.js';
import {
  createCustomers,
  packageRequestsByCustomer,
  startIntegration,
  startUpstreams,
  waitUntil,
  type Upstreams,
} from '../support/platform.js';

/** Where the test leaves its screenshot (CI keeps it as an artifact). */
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url);

let browser: Browser;
let upstreams: Upstreams | undefined;
let integration: TestApp<IntegrationTables> | undefined;

beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  await integration?.close();
  await upstreams?.close();
  integration = upstreams = undefined;
});

it('shows deliveries live, lists a dead letter, and delivers it once after Replay is clicked', async () => {
  upstreams = await startUpstreams();
  let poisoned: string | undefined;
  upstreams.proxy.answer = (call) =>
    call.customerId !== undefined && call.customerId === poisoned
      ? { status: 422, body: { detail: 'this customer is on hold', code: 'on_hold' } }
      : undefined;
  integration = await startIntegration(upstreams);
  const dashboardUrl = `http://127.0.0.1:${(integration.app.server.address() as { port: number }).port}/`;

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(dashboardUrl);
  await expect.poll(() => page.textContent('#count-delivered'), { timeout: 10_000 }).toBe('0');

  await createCustomers(upstreams.crmUrl, 3, { prefix: 'dash' });
  await expect.poll(() => page.textContent('#count-delivered'), { timeout: 15_000 }).toBe('3');
  await expect.poll(() => page.locator('#recent-table tbody tr').count()).toBe(3);

  // Inventory refuses the next customer for good: it becomes a dead letter on the page.
  const [held] = await createCustomers(upstreams.crmUrl, 1, { prefix: 'held' });
  poisoned = held;
  await expect.poll(() => page.textContent('#count-dead'), { timeout: 15_000 }).toBe('1');
  const row = page.locator('#dead-table tbody tr', { hasText: held! });
  await expect.poll(() => row.count()).toBe(1);
  expect(await row.textContent()).toContain('this customer is on hold');
  // What the failing attempt asked Inventory, at which customer version.
  expect(await row.textContent()).toContain('create v1');
  expect(await page.isEnabled('#replay-all')).toBe(true);

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({
    path: new URL('dashboard-dead-letter.png', ARTIFACTS).pathname,
    fullPage: true,
  });

  // The cause is fixed; one click replays it.
  poisoned = undefined;
  await row.locator('button', { hasText: 'Replay' }).click();
  await expect.poll(() => page.textContent('#count-delivered'), { timeout: 15_000 }).toBe('4');
  await expect.poll(() => page.textContent('#count-dead')).toBe('0');
  expect(await page.isHidden('#dead-table')).toBe(true);
  expect((await packageRequestsByCustomer(upstreams.inventory)).get(held!)).toBe(1);
  const delivered = page.locator('#recent-table tbody tr', { hasText: held! });
  await expect.poll(() => delivered.textContent()).toContain('create v1 · created');
  await page.screenshot({ path: new URL('dashboard.png', ARTIFACTS).pathname, fullPage: true });

  // Pause and resume from the header: one click, one request, whatever was clicked before.
  const actions: string[] = [];
  page.on('request', (request) => {
    if (request.url().includes('/api/delivery/')) actions.push(new URL(request.url()).pathname);
  });
  await page.click('#pause-toggle');
  await expect.poll(() => page.isVisible('#paused')).toBe(true);
  expect(await page.textContent('#pause-toggle')).toBe('Resume delivery');
  await page.click('#pause-toggle');
  await expect.poll(() => page.isHidden('#paused')).toBe(true);
  expect(actions).toEqual(['/api/delivery/pause', '/api/delivery/resume']);

  await waitUntil(
    async () => (await page.textContent('#lag-p50')) !== '–',
    5_000,
    'the lag figure',
  );
  expect(await page.textContent('#circuit')).toBe('circuit closed');
  await page.close();
}, 60_000);
