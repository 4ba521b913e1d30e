/**
 * Update lag: how long after the CRM answers a change (`PATCH /customers/{id}`) Inventory's
 * package request carries the new recipient. Run on a stack whose customers were all delivered:
 * each is changed once, open loop at the given rate, and the lag of each is Inventory's
 * `updated_at` of the request minus the CRM's `updated_at` of the change (one machine, one clock),
 * read after the run so reading adds no load during it.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { percentile } from './numbers.js';

export interface UpdateLagFigures {
  changes: number;
  rate: number;
  failed: number;
  /** Changes Inventory did not show within the wait. */
  not_applied: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
}

export interface UpdateLagOptions {
  crmUrl: string;
  inventoryUrl: string;
  /** Delivered customers to change, once each. */
  customerIds: string[];
  /** Changes per second. */
  rate: number;
  /** Longest wait for Inventory to show every change, after the last one. */
  drainTimeoutMs: number;
  progress: (line: string) => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Inventory's package requests of these customers: customer id → [customer_version, updated_at ms]. */
async function readRequests(
  inventoryUrl: string,
  wanted: ReadonlySet<string>,
): Promise<Map<string, [number, number]>> {
  const found = new Map<string, [number, number]>();
  let url: string | undefined = `${inventoryUrl}/package-requests?limit=1000`;
  while (url) {
    const answer = await fetch(url);
    for (const row of (await answer.json()) as {
      customer_id: string;
      customer_version: number | null;
      updated_at: string;
    }[]) {
      if (wanted.has(row.customer_id)) {
        found.set(row.customer_id, [row.customer_version ?? 1, Date.parse(row.updated_at)]);
      }
    }
    const next = /<([^>]+)>;\s*rel="next"/.exec(answer.headers.get('link') ?? '')?.[1];
    url = next ? new URL(next, inventoryUrl).toString() : undefined;
  }
  return found;
}

export async function measureUpdateLag(options: UpdateLagOptions): Promise<UpdateLagFigures> {
  const { crmUrl, inventoryUrl, customerIds, rate, progress } = options;
  const suffix = randomBytes(3).toString('hex');
  /** customer id → [the version the change made, when the CRM recorded it (ms)] */
  const changed = new Map<string, [number, number]>();
  let failed = 0;
  const change = async (customerId: string) => {
    try {
      const answer = await request(`${crmUrl}/customers/${customerId}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: `Changed ${suffix}` }),
      });
      const body = (await answer.body.json()) as { version: number; updated_at: string };
      if (answer.statusCode === 200)
        changed.set(customerId, [body.version, Date.parse(body.updated_at)]);
      else failed++;
    } catch {
      failed++;
    }
  };
  // Open loop: every 10 ms, send what is due, whatever the answers' speed.
  const inFlight = new Set<Promise<void>>();
  const started = performance.now();
  let sent = 0;
  while (sent < customerIds.length) {
    const due = Math.min(
      customerIds.length,
      Math.floor(((performance.now() - started) / 1000) * rate),
    );
    while (sent < due) {
      const call = change(customerIds[sent++]!);
      inFlight.add(call);
      void call.finally(() => inFlight.delete(call));
    }
    progress(`update_lag: ${sent}/${customerIds.length} changes sent at ${rate}/s`);
    await sleep(10);
  }
  await Promise.all(inFlight);

  const wanted = new Set(changed.keys());
  const deadline = performance.now() + options.drainTimeoutMs;
  let requests = await readRequests(inventoryUrl, wanted);
  const applied = () =>
    [...changed].filter(([id, [version]]) => (requests.get(id)?.[0] ?? 0) >= version).length;
  while (applied() < changed.size && performance.now() < deadline) {
    progress(`update_lag: ${applied()}/${changed.size} changes in Inventory`);
    await sleep(1_000);
    requests = await readRequests(inventoryUrl, wanted);
  }
  const lags: number[] = [];
  for (const [id, [version, at]] of changed) {
    const [inventoryVersion, updatedAt] = requests.get(id) ?? [0, 0];
    if (inventoryVersion >= version) lags.push(Math.max(0, updatedAt - at));
  }
  lags.sort((a, b) => a - b);
  return {
    changes: changed.size,
    rate,
    failed,
    not_applied: changed.size - lags.length,
    p50_ms: percentile(lags, 0.5),
    p99_ms: percentile(lags, 0.99),
    max_ms: lags[lags.length - 1] ?? NaN,
  };
}
