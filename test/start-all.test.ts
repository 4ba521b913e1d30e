import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { DIST, exitOf, freePort } from './support/processes.js';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mip-start-all-'));
afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

async function waitFor(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not ready within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

it("runs the seed's walkthrough against all services started together, and stops them all on Ctrl-C", async () => {
  const [crmPort, inventoryPort, integrationPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  // The services keep their own database settings out of this test: embedded SQLite.
  const env = { ...process.env };
  delete env.CRM_DATABASE_URL;
  delete env.INVENTORY_DATABASE_URL;
  delete env.INTEGRATION_DATABASE_URL;
  // The bundle `npm start` runs (bin/start.js); it finds the services' bundles beside it.
  const child = spawn(process.execPath, [`${DIST}bundles/start-all.mjs`], {
    env: {
      ...env,
      DATA_DIR: dataDir,
      CRM_PORT: String(crmPort),
      INVENTORY_PORT: String(inventoryPort),
      INTEGRATION_PORT: String(integrationPort),
      CRM_URL: `http://127.0.0.1:${crmPort}`,
      INVENTORY_URL: `http://127.0.0.1:${inventoryPort}`,
      LOG_FORMAT: 'json',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    const crm = `http://127.0.0.1:${crmPort}`;
    const inventory = `http://127.0.0.1:${inventoryPort}`;
    const integration = `http://127.0.0.1:${integrationPort}`;
    await Promise.all([
      waitFor(`${crm}/ready`, 20_000),
      waitFor(`${inventory}/ready`, 20_000),
      waitFor(`${integration}/ready`, 20_000),
    ]);
    // The default mode is hybrid: the integration service subscribes itself to CRM webhooks, and
    // reconciles by reading the feed every POLL_INTERVAL_MS (10 s). Wait for both the subscription
    // and a first successful reconciliation read, so the next one is seconds away and the
    // customer below can only arrive by webhook (a read still retrying after the CRM came up
    // could otherwise find it first).
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const status = (await (await fetch(`${integration}/api/status`)).json()) as {
        webhook: { registered: boolean } | null;
        poll: { last_success_at: string | null } | null;
      };
      if (status.webhook?.registered && status.poll?.last_success_at) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    // The caller's W3C trace context: the same trace id must reach every service's logs.
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const created = await fetch(`${crm}/customers`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
      },
      body: '{"name":"Jane Doe","email":"jane.doe@example.com"}',
    });
    expect(created.status).toBe(201);
    const customer = (await created.json()) as { id: string };
    expect((await (await fetch(`${crm}/customers`)).json()) as unknown[]).toHaveLength(1);

    // The integration service notices the customer and asks Inventory for its welcome package,
    // well within the seed's 10 s.
    const started = Date.now();
    let list: { customer_id: string }[] = [];
    while (list.length === 0 && Date.now() - started < 10_000) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      list = (await (await fetch(`${inventory}/package-requests`)).json()) as typeof list;
    }
    expect(list.map((item) => item.customer_id)).toEqual([customer.id]);
    // It came by push (a signed webhook), not by the reconciliation poll.
    const deliveries = (await (await fetch(`${integration}/api/deliveries`)).json()) as {
      customer_id: string;
      source: string;
    }[];
    expect(deliveries).toEqual([
      expect.objectContaining({ customer_id: customer.id, source: 'webhook' }),
    ]);
    expect(output).toContain(`Found new customer: Jane Doe (ID: ${customer.id})`);
    expect(output).toContain(`Creating package request for customer ID: ${customer.id}`);
    expect(output).toContain(`Created package request for customer: ${customer.id}`);
    expect(output).toContain(
      `Successfully created package request for customer ID: ${customer.id}`,
    );

    // One trace from the CRM request, through the webhook and the integration service, to Inventory.
    for (const service of ['crm', 'integration', 'inventory']) {
      const traced = output
        .split('\n')
        .filter(
          (line) => line.startsWith(`[${service}]`) && line.includes(`"trace_id":"${traceId}"`),
        );
      expect(traced.length, service).toBeGreaterThan(0);
    }
    expect(
      output.split('\n').find((line) => line.includes('Successfully created package request')),
    ).toContain(traceId);

    // Logs are interleaved with a prefix naming each service.
    expect(output).toMatch(/^\[crm\] /m);
    expect(output).toMatch(/^\[inventory\] /m);
    expect(output).toMatch(/^\[integration\] /m);
  } finally {
    child.kill('SIGINT');
  }
  expect(await exitOf(child)).toBe(0);
  expect(output).toMatch(/\[crm\] .*Stopped/);
  expect(output).toMatch(/\[inventory\] .*Stopped/);
  expect(output).toMatch(/\[integration\] .*Stopped/);
});
