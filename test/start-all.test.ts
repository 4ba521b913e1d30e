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
  const [crmPort, inventoryPort] = [await freePort(), await freePort()];
  // The services keep their own database settings out of this test: embedded SQLite.
  const env = { ...process.env };
  delete env.CRM_DATABASE_URL;
  delete env.INVENTORY_DATABASE_URL;
  const child = spawn(process.execPath, [`${DIST}start-all.js`], {
    env: {
      ...env,
      DATA_DIR: dataDir,
      CRM_PORT: String(crmPort),
      INVENTORY_PORT: String(inventoryPort),
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
    await Promise.all([waitFor(`${crm}/ready`, 20_000), waitFor(`${inventory}/ready`, 20_000)]);

    const created = await fetch(`${crm}/customers`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"name":"Jane Doe","email":"jane.doe@example.com"}',
    });
    expect(created.status).toBe(201);
    const customer = (await created.json()) as { id: string };
    expect((await (await fetch(`${crm}/customers`)).json()) as unknown[]).toHaveLength(1);

    const requested = await fetch(`${inventory}/package-requests`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'Idempotency-Key': `welcome-package:${customer.id}`,
      },
      body: JSON.stringify({ customer_id: customer.id }),
    });
    expect(requested.status).toBe(201);
    const list = (await (await fetch(`${inventory}/package-requests`)).json()) as {
      customer_id: string;
    }[];
    expect(list.map((item) => item.customer_id)).toEqual([customer.id]);

    // Logs are interleaved with a prefix naming each service.
    expect(output).toMatch(/^\[crm\] /m);
    expect(output).toMatch(/^\[inventory\] /m);
  } finally {
    child.kill('SIGINT');
  }
  expect(await exitOf(child)).toBe(0);
  expect(output).toMatch(/\[crm\] .*Stopped/);
  expect(output).toMatch(/\[inventory\] .*Stopped/);
});
