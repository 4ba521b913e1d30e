import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import type { TestApp } from '../support/apps.js';
import { launchChromium } from '../support/browser.js';
import { deliveryStateOf } from '../support/dead-letters.js';
import {
  createCustomers,
  packageRequestsByCustomer,
  startIntegration,
  startUpstreams,
  type Upstreams,
} from '../support/platform.js';

// The attacker's site gets a real name of its own that resolves to this machine, as a page on the
// internet would, and as a DNS rebinding attack makes it (its name, then our address).
const ATTACKER = 'attacker.test';

let browser: Browser;
/** The test's pages, closed before the service: none still polls it while it shuts down. */
let pages: BrowserContext | undefined;
let upstreams: Upstreams | undefined;
let integration: TestApp<IntegrationTables> | undefined;
let attackerSite: http.Server | undefined;

beforeAll(async () => {
  browser = await launchChromium([`--host-resolver-rules=MAP ${ATTACKER} 127.0.0.1`]);
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  // A browser that crashed must not keep the service from being closed.
  await pages?.close().catch(() => {});
  await integration?.close();
  await upstreams?.close();
  await new Promise((resolve) => attackerSite?.close(resolve) ?? resolve(undefined));
  integration = upstreams = attackerSite = pages = undefined;
});

/** A site on another origin serving `pages` (path → HTML). */
async function serveAttackerSite(pages: Record<string, string>): Promise<string> {
  attackerSite = http.createServer((request, response) => {
    const page = pages[request.url ?? ''];
    response.writeHead(page ? 200 : 404, { 'content-type': 'text/html' }).end(page ?? '');
  });
  await new Promise<void>((resolve) => attackerSite!.listen(0, '127.0.0.1', resolve));
  return `http://${ATTACKER}:${(attackerSite.address() as AddressInfo).port}`;
}

/** Collects the page's Content-Security-Policy violations, from before its first script runs. */
async function watchCspViolations(page: Page): Promise<() => Promise<string[]>> {
  // Browser code as text: this file is type-checked without the DOM's types.
  await page.addInitScript(`
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (event) =>
      window.cspViolations.push(event.violatedDirective + ' ' + event.blockedURI));
  `);
  return () => page.evaluate('window.cspViolations') as Promise<string[]>;
}

/** How the service answered `method route` so far, by status code, from its own metrics. */
async function answersTo(method: string, route: string): Promise<Record<string, number>> {
  const counter = await integration!.app.metrics.getSingleMetric('http_requests_total')!.get();
  return Object.fromEntries(
    counter.values
      .filter(({ labels }) => labels.method === method && labels.route === route)
      .map(({ labels, value }) => [String(labels.status_code), value]),
  );
}

const deliveryState = (customerId: string) => deliveryStateOf(integration!.database, customerId);

it('refuses a page on another site: bodiless POST, form POST, framing, a rebound name; the dashboard still replays', async () => {
  upstreams = await startUpstreams();
  let held = '';
  upstreams.proxy.answer = (call) =>
    call.customerId === held
      ? { status: 422, body: { detail: 'this customer is on hold', code: 'on_hold' } }
      : undefined;
  integration = await startIntegration(upstreams);
  const port = (integration.app.server.address() as AddressInfo).port;
  const service = `http://127.0.0.1:${port}`;
  const replayAll = `${service}/api/dead-letters/replay`;
  held = (await createCustomers(upstreams.crmUrl, 1, { prefix: 'held' }))[0]!;
  await expect.poll(() => deliveryState(held), { timeout: 15_000 }).toBe('dead');
  const heldId = held;
  // Inventory would take it now: only a replay can deliver it.
  upstreams.proxy.answer = () => undefined;

  const site = await serveAttackerSite({
    '/fetch': `<script>fetch(${JSON.stringify(replayAll)}, { method: 'POST', mode: 'no-cors' });</script>`,
    '/form': `<form method="POST" action="${replayAll}" enctype="text/plain"><input name="a" value="b"></form><script>document.forms[0].submit();</script>`,
    '/frame': `<iframe id="victim" src="${service}/" width="800" height="600"></iframe>`,
  });
  pages = await browser.newContext();
  const page = await pages.newPage();

  // 1. What `fetch(url, {method: 'POST', mode: 'no-cors'})` sends: no body, no content type.
  // The browser hides the answer from the page (Cross-Origin-Resource-Policy): the service's own
  // count of its answers shows the refusal.
  const sent = page.waitForEvent('requestfailed', (request) => request.url() === replayAll);
  await page.goto(`${site}/fetch`);
  await sent;
  expect(await answersTo('POST', '/api/dead-letters/replay')).toEqual({ 403: 1 });

  // 2. A form, which navigates: the answer is the refusal, not a replay.
  const form = page.waitForResponse(replayAll);
  await page.goto(`${site}/form`);
  const formAnswer = await form;
  expect(formAnswer.status()).toBe(403);
  expect((await formAnswer.json()).code).toBe('cross_site_request');
  expect(await answersTo('POST', '/api/dead-letters/replay')).toEqual({ 403: 2 });

  // 3. The dashboard in a frame of the other site: the browser refuses to show it.
  await page.goto(`${site}/frame`);
  const frame = await (await page.waitForSelector('#victim')).contentFrame();
  await page.waitForTimeout(500);
  expect(await frame!.$('#replay-all')).toBeNull();

  // 4. DNS rebinding: the other site's name, now resolving here, on the service's port.
  const rebound = await page.goto(`http://${ATTACKER}:${port}/api/dead-letters`);
  expect(rebound!.status()).toBe(421);
  expect(await rebound!.text()).not.toContain(heldId);

  expect(await deliveryState(heldId)).toBe('dead');
  expect((await packageRequestsByCustomer(upstreams.inventory)).get(heldId)).toBeUndefined();

  // The dashboard itself, on its own origin, renders under its CSP and replays.
  const dashboard = await pages.newPage();
  const violations = await watchCspViolations(dashboard);
  await dashboard.goto(`${service}/`);
  await expect.poll(() => dashboard.textContent('#count-dead'), { timeout: 10_000 }).toBe('1');
  await dashboard.click('#replay-all');
  await expect.poll(() => deliveryState(heldId), { timeout: 15_000 }).toBe('delivered');
  expect((await packageRequestsByCustomer(upstreams.inventory)).get(heldId)).toBe(1);
  expect(await violations()).toEqual([]);

  // Swagger UI still works under the same policy.
  const docs = await pages.newPage();
  const docsViolations = await watchCspViolations(docs);
  await docs.goto(`${service}/docs`);
  await expect
    .poll(() => docs.textContent('.swagger-ui .info .title').catch(() => null), {
      timeout: 10_000,
    })
    .toContain('Integration service');
  expect(await docs.locator('.opblock').count()).toBeGreaterThan(3);
  expect(await docsViolations()).toEqual([]);
}, 60_000);
