import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { waitUntil } from './support/platform.js';
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

/** The pids of `pid`'s child processes, from /proc (Linux). */
function childrenOf(pid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        // The parent pid is the 2nd field after the parenthesised command name.
        const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false; // it exited meanwhile
      }
    })
    .map(Number);
}

/** The bundle `npm start` runs (bin/start.js), on embedded SQLite and the given ports. */
function startAll(
  ports: { crm: number; inventory: number; integration: number },
  extraEnv: Record<string, string> = {},
) {
  // The services keep their own database settings out of this test: embedded SQLite.
  const env = { ...process.env };
  delete env.CRM_DATABASE_URL;
  delete env.INVENTORY_DATABASE_URL;
  delete env.INTEGRATION_DATABASE_URL;
  return spawn(process.execPath, [`${DIST}bundles/start-all.mjs`], {
    env: {
      ...env,
      DATA_DIR: dataDir,
      CRM_PORT: String(ports.crm),
      INVENTORY_PORT: String(ports.inventory),
      INTEGRATION_PORT: String(ports.integration),
      CRM_URL: `http://127.0.0.1:${ports.crm}`,
      INVENTORY_URL: `http://127.0.0.1:${ports.inventory}`,
      LOG_FORMAT: 'json',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

it("runs the seed's walkthrough against all services started together in one process, and stops them all on Ctrl-C", async () => {
  const [crmPort, inventoryPort, integrationPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  // An OTLP collector: each service's spans must arrive under its own name.
  const exported: string[] = [];
  const collector = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      exported.push(body);
      response.end();
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const collectorPort = (collector.address() as AddressInfo).port;
  const child = startAll(
    { crm: crmPort, inventory: inventoryPort, integration: integrationPort },
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collectorPort}`,
      OTEL_BSP_SCHEDULE_DELAY: '50',
    },
  );
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

    // One trace from the CRM request, through the webhook and the integration service, to
    // Inventory; every log line names its service.
    const lines = output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { name: string; msg: string; trace_id?: string });
    for (const service of ['crm', 'integration', 'inventory']) {
      const traced = lines.filter((line) => line.name === service && line.trace_id === traceId);
      expect(traced.length, service).toBeGreaterThan(0);
    }
    expect(
      lines.find((line) => line.msg.includes('Successfully created package request')),
    ).toMatchObject({ name: 'integration', trace_id: traceId });

    // Spans are exported under each service's name, though the three share a process.
    const named = (service: string) =>
      exported.some((body) =>
        body.includes(`{"key":"service.name","value":{"stringValue":"${service}"}}`),
      );
    await waitUntil(
      () => ['crm', 'inventory', 'integration'].every(named),
      10_000,
      "every service's spans at the collector",
    );
    for (const service of ['crm', 'inventory', 'integration'])
      expect(named(service), service).toBe(true);

    // One process hosts all three: it started no other.
    expect(childrenOf(child.pid!)).toEqual([]);
  } finally {
    child.kill('SIGINT');
    collector.close();
  }
  expect(await exitOf(child)).toBe(0);
  for (const service of ['crm', 'inventory', 'integration']) {
    expect(output).toMatch(new RegExp(`"name":"${service}".*"msg":"Stopped"`));
  }
});

it('stops the services that started and exits 1 when one cannot start, saying which and why', async () => {
  // Something else already listens on Inventory's port.
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const inventoryPort = (taken.address() as AddressInfo).port;
  try {
    const child = startAll({
      crm: await freePort(),
      inventory: inventoryPort,
      integration: await freePort(),
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    expect(await exitOf(child)).toBe(1);
    expect(output).toMatch(
      new RegExp(`"name":"inventory".*"msg":"Inventory[^"]* could not start: .*EADDRINUSE`),
    );
    // The two that did start were stopped, not left running.
    for (const service of ['crm', 'integration']) {
      expect(output).toMatch(new RegExp(`"name":"${service}".*listening on`));
      expect(output).toMatch(new RegExp(`"name":"${service}".*"msg":"Stopped"`));
    }
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});

it("prints the walkthrough's lines for people (LOG_FORMAT=pretty), each naming its service, in the order they happen", async () => {
  const ports = {
    crm: await freePort(),
    inventory: await freePort(),
    integration: await freePort(),
  };
  const child = startAll(ports, { LOG_FORMAT: 'pretty' });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    for (const port of Object.values(ports))
      await waitFor(`http://127.0.0.1:${port}/ready`, 20_000);
    const created = await fetch(`http://127.0.0.1:${ports.crm}/customers`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"name":"Jane Doe","email":"jane.doe@example.com"}',
    });
    const { id } = (await created.json()) as { id: string };
    await waitUntil(
      () => output.includes('Successfully created'),
      10_000,
      'the delivery in the log',
    );
    // Colours stripped: what a terminal shows.
    // eslint-disable-next-line no-control-regex -- ANSI colour codes
    const lines = output.replace(/\x1b\[[0-9;]*m/g, '').split('\n');
    const expected = [
      `INFO (integration): Found new customer: Jane Doe (ID: ${id})`,
      `INFO (integration): Creating package request for customer ID: ${id}`,
      `INFO (inventory): Created package request for customer: ${id}`,
      `INFO (integration): Successfully created package request for customer ID: ${id}`,
    ];
    const at = expected.map((text) => lines.findIndex((line) => line.includes(text)));
    expect(
      at.every((index) => index >= 0),
      output,
    ).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  } finally {
    child.kill('SIGINT');
  }
  expect(await exitOf(child)).toBe(0);
});
