/** The services a scenario runs: CRM and Inventory on a fresh DATA_DIR, and the integration. */
import { randomBytes } from 'node:crypto';
import { createBenchDatabases, type BenchDatabases } from './databases.js';
import { DELIVERY_TIMEOUT_MS } from './options.js';
import { progress } from './output.js';
import {
  freePort,
  serviceScript,
  sleep,
  startService,
  untilReady,
  type Service,
} from './services.js';

export interface Stack {
  crm: Service;
  inventory: Service;
  /** The environment that points a service at this stack's databases. */
  databaseEnv: Record<string, string>;
  stopAll(): Promise<void>;
}

/**
 * Starts the CRM once so its own migrations create its schema, then writes `customers` into its
 * database directly while it is stopped.
 */
async function fillCrm(
  label: string,
  databases: BenchDatabases,
  customers: number,
  env: Record<string, string> = {},
): Promise<void> {
  const migrate = await startService('crm', serviceScript('crm'), 'CRM_PORT', {
    ...databases.env,
    ...env,
  });
  await migrate.stop();
  progress(
    `${label}: inserting ${customers.toLocaleString('en')} customers into the CRM's database directly`,
  );
  await databases.insertCustomers(customers, `${label}-${randomBytes(3).toString('hex')}`);
}

/** CRM and Inventory on fresh databases; with `customers`, that many already in the CRM. */
export async function startStack(
  label: string,
  env: Record<string, string>,
  customers = 0,
): Promise<Stack> {
  const databases = await createBenchDatabases(label);
  const common = { ...databases.env, ...env };
  try {
    if (customers > 0) await fillCrm(label, databases, customers, env);
    const starts = await Promise.allSettled([
      startService('crm', serviceScript('crm'), 'CRM_PORT', common),
      startService('inventory', serviceScript('inventory'), 'INVENTORY_PORT', common),
    ]);
    const up = starts.flatMap((start) => (start.status === 'fulfilled' ? [start.value] : []));
    const failed = starts.find((start) => start.status === 'rejected');
    if (failed) {
      await Promise.all(up.map((service) => service.stop()));
      throw failed.reason;
    }
    const [crm, inventory] = up as [Service, Service];
    return {
      crm,
      inventory,
      databaseEnv: databases.env,
      stopAll: async () => {
        await Promise.all([crm, inventory].map((service) => service.stop()));
        await databases.drop();
      },
    };
  } catch (error) {
    // A stack that did not start leaves nothing behind.
    await databases.drop();
    throw error;
  }
}

export function startIntegration(
  stack: Stack,
  mode: string,
  env: Record<string, string>,
): Promise<Service> {
  return startService('integration', serviceScript('integration'), 'INTEGRATION_PORT', {
    ...stack.databaseEnv,
    SYNC_MODE: mode,
    CRM_URL: stack.crm.url,
    INVENTORY_URL: stack.inventory.url,
    ...env,
  });
}

/**
 * The three services in one process, as `npm start` runs them (dist/bundles/start-all.mjs), on
 * fresh databases, the integration in `mode`; with `customers`, that many already in the CRM when
 * the process starts. Each is its own Service, all three of one child.
 */
export async function startOneProcess(
  label: string,
  mode: string,
  env: Record<string, string>,
  customers = 0,
): Promise<{ stack: Stack; integration: Service; startedAt: number }> {
  const databases = await createBenchDatabases(label);
  try {
    if (customers > 0) await fillCrm(label, databases, customers, env);
    /** When the process was spawned (`performance.now()`), after the CRM was filled. */
    const startedAt = performance.now();
    const [crmPort, inventoryPort, integrationPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const inventoryUrl = `http://127.0.0.1:${inventoryPort}`;
    // Ready once the CRM answers; the other two are waited for below.
    const crm = await startService(
      'platform',
      serviceScript('start-all'),
      'CRM_PORT',
      {
        ...databases.env,
        SYNC_MODE: mode,
        INVENTORY_PORT: String(inventoryPort),
        INTEGRATION_PORT: String(integrationPort),
        CRM_URL: `http://127.0.0.1:${crmPort}`,
        INVENTORY_URL: inventoryUrl,
        ...env,
      },
      crmPort,
    );
    const integrationUrl = `http://127.0.0.1:${integrationPort}`;
    const deadline = Date.now() + 30_000;
    const running = () => crm.child.exitCode === null;
    for (const url of [inventoryUrl, integrationUrl]) {
      if (!(await untilReady(url, deadline, 50, running))) {
        const why = running() ? 'not ready within 30 s' : `exited with ${crm.child.exitCode}`;
        await crm.stop();
        throw new Error(`${label}: ${url} ${why}:\n${crm.output()}`);
      }
    }
    const of = (name: string, url: string): Service => ({ ...crm, name, url });
    return {
      stack: {
        crm: of('crm', crm.url),
        inventory: of('inventory', inventoryUrl),
        databaseEnv: databases.env,
        stopAll: async () => {
          await crm.stop();
          await databases.drop();
        },
      },
      integration: of('integration', integrationUrl),
      startedAt,
    };
  } catch (error) {
    await databases.drop();
    throw error;
  }
}

/**
 * Inventory's counters, from one read of its `/metrics` (one cheap GET): package requests created,
 * and write calls answered (POST, PUT, PATCH, DELETE on any route; with the customers delivered
 * meanwhile, how well calls are batched).
 */
export async function inventoryCounters(
  inventory: Service,
): Promise<{ created: number; writeCalls: number }> {
  const text = await (await fetch(`${inventory.url}/metrics`)).text();
  const created = /^inventory_package_requests_created_total(?:\{[^}]*\})? (\d+)/m.exec(text);
  let writeCalls = 0;
  for (const match of text.matchAll(
    /^http_requests_total\{[^}]*method="(?:POST|PUT|PATCH|DELETE)"[^}]*\} (\d+)/gm,
  ))
    writeCalls += Number(match[1]);
  return { created: created ? Number(created[1]) : 0, writeCalls };
}

/** Package requests Inventory has created. */
export async function inventoryCount(inventory: Service): Promise<number> {
  return (await inventoryCounters(inventory)).created;
}

/** Waits until Inventory holds `target` package requests; answers the ms it took, or null on timeout. */
export async function waitForDeliveries(
  inventory: Service,
  target: number,
  label: string,
  since: number,
  timeoutMs = DELIVERY_TIMEOUT_MS,
) {
  for (;;) {
    const count = await inventoryCount(inventory);
    const seconds = (performance.now() - since) / 1000;
    progress(
      `${label}: ${count.toLocaleString('en')}/${target.toLocaleString('en')} package requests, ${Math.round(count / seconds)}/s`,
    );
    if (count >= target) return performance.now() - since;
    if (performance.now() - since > timeoutMs) return null;
    await sleep(100);
  }
}
