import fs from 'node:fs';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { launchChromium } from '../support/browser.js';
import { createCustomers, packageRequestsByCustomer, usePlatform } from '../support/platform.js';

/** Where the test leaves its screenshot (CI keeps it as an artifact). */
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url);

let browser: Browser;
const start = usePlatform();

beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

it('finds a customer by email, shows its timeline, and replays its dead letter from its page', async () => {
  let holding = true;
  const { upstreams, url } = await start({}, (upstreams) => {
    upstreams.proxy.answer = (call) =>
      holding && call.customerId !== undefined
        ? { status: 422, body: { detail: 'this customer is on hold', code: 'on_hold' } }
        : undefined;
  });
  const dashboardUrl = `${url}/`;
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(dashboardUrl);

  // Inventory refuses the customer for good: a dead letter, linked to its page.
  const [holdId] = await createCustomers(upstreams.crmUrl, 1, { prefix: 'page' });
  await expect.poll(() => page.textContent('#count-dead'), { timeout: 15_000 }).toBe('1');

  await page.fill('#search-input', 'PAGE-0@example.com');
  await page.click('#search button');
  await expect.poll(() => new URL(page.url()).hash).toBe(`#/customers/${holdId}`);
  expect(await page.isHidden('#overview')).toBe(true);
  const rows = page.locator('#timeline-table tbody tr');
  await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(2);
  expect(await rows.nth(0).textContent()).toContain('received customer.created v1');
  expect(await rows.nth(0).textContent()).toContain('taken');
  expect(await rows.nth(1).textContent()).toContain('create v1');
  expect(await rows.nth(1).textContent()).toContain('dead');
  expect(await rows.nth(1).textContent()).toContain('422');
  expect(await rows.nth(1).textContent()).toContain('this customer is on hold');
  expect(await page.textContent('#customer-summary')).toContain('dead letter');

  // The cause is fixed; Replay on the customer's page delivers it once, and the page shows how.
  holding = false;
  await page.click('#customer-replay');
  await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(4);
  expect(await rows.nth(2).textContent()).toContain('replay by admin');
  expect(await rows.nth(3).textContent()).toContain('delivered · created');
  expect(await page.isHidden('#customer-replay')).toBe(true);
  expect((await packageRequestsByCustomer(upstreams.inventory)).get(holdId!)).toBe(1);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: new URL('dashboard-customer.png', ARTIFACTS).pathname });

  // Back on the overview, each recent delivery links to its customer's page.
  await page.click('#customer-back');
  await page.locator('#recent-table a', { hasText: holdId! }).click();
  await expect.poll(() => new URL(page.url()).hash).toBe(`#/customers/${holdId}`);
  await expect.poll(() => rows.count()).toBe(4);

  // Something that is neither an id nor an email, or an email nobody has, says so.
  await page.fill('#search-input', 'nobody-here@example.com');
  await page.click('#search button');
  await expect
    .poll(() => page.textContent('#toast'))
    .toContain('No customer in the CRM has the email nobody-here@example.com');
  await page.close();
}, 60_000);
