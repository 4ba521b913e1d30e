/**
 * push_lag: customers created open loop at a steady rate after a warm-up, and how long each takes
 * to reach Inventory as a package request; in the default mode (hybrid) the update lag too.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { cpuPerCustomer, describeCpu, readCpu, type CpuReading } from './cpu.js';
import { percentile, round } from './numbers.js';
import { PUSH_DRAIN_TIMEOUT_MS, SIZES } from './options.js';
import { progress, say } from './output.js';
import type { LagFigures } from './results.js';
import { residentMemory, sleep, type Service } from './services.js';
import {
  inventoryCount,
  inventoryCounters,
  startIntegration,
  startOneProcess,
  startStack,
  waitForDeliveries,
  type Stack,
} from './stack.js';
import { measureUpdateLag } from './update-lag.js';

export type LagResult = LagFigures & { sorted: number[] };

/** A process per service, or the three in one (`npm start`'s default). */
async function startServices(
  mode: string,
  env: Record<string, string>,
  oneProcess: boolean,
): Promise<{ stack: Stack; processes: Record<string, Service> }> {
  if (oneProcess) {
    const { stack, integration } = await startOneProcess(`push-${mode}-one-process`, mode, env);
    // One process: its CPU and memory are read once, under one name.
    return { stack, processes: { platform: integration } };
  }
  const stack = await startStack(`push-${mode}`, env);
  try {
    const integration = await startIntegration(stack, mode, env);
    stack.stopAll = ((stopAll) => async () => {
      await integration.stop();
      await stopAll();
    })(stack.stopAll);
    return { stack, processes: { crm: stack.crm, inventory: stack.inventory, integration } };
  } catch (error) {
    await stack.stopAll();
    throw error;
  }
}

/**
 * One push_lag run in sync mode `mode` on fresh services, a process each or (`oneProcess`) all
 * three in one: its lags, CPU, memory and (hybrid) update lag.
 */
export async function pushLag(
  mode: string,
  env: Record<string, string>,
  oneProcess = false,
): Promise<LagResult | null> {
  const name = oneProcess ? `${mode}, one process` : mode;
  const label = `push_lag ${name}`;
  const { stack, processes: services } = await startServices(mode, env, oneProcess);
  try {
    // A warm-up first, ramping the rate from a tenth of it to all of it, as load tests ramp up:
    // cold processes (interpreted code before the JIT, empty connection pools and SQLite caches)
    // hit at once with the full rate build a backlog that the measured window would then drain.
    // Its lags are reported apart from the measured window's, which runs at the steady rate.
    const rate = SIZES.push_rate;
    const rampSeconds = SIZES.push_warmup_seconds;
    const rampStart = rate / 10;
    /** Customers due `t` seconds after the start: the ramp's integral, then the steady rate. */
    const dueAt = (t: number) =>
      t <= rampSeconds
        ? rampStart * t + ((rate - rampStart) * t * t) / (2 * rampSeconds)
        : ((rampStart + rate) / 2) * rampSeconds + rate * (t - rampSeconds);
    const warmupCount = Math.floor(dueAt(rampSeconds));
    const total = warmupCount + SIZES.push_rate * SIZES.push_seconds;
    const createdAt = new Map<string, number>();
    const warmupIds = new Set<string>();
    let failed = 0;
    let sent = 0;
    const inFlight = new Set<Promise<void>>();
    const prefix = randomBytes(4).toString('hex');
    const create = async (n: number) => {
      try {
        // undici's request rather than fetch: the load generator shares the CPUs with the services.
        const answer = await request(`${stack.crm.url}/customers`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            name: `Lag Customer ${n}`,
            email: `lag-${prefix}-${n}@example.com`,
          }),
        });
        const body = (await answer.body.json()) as { id: string; created_at: string };
        if (answer.statusCode === 201) {
          createdAt.set(body.id, Date.parse(body.created_at));
          if (n <= warmupCount) warmupIds.add(body.id);
        } else {
          failed++;
        }
      } catch {
        failed++;
      }
    };
    // CPU is measured over the steady rate: from the end of the warm-up until every customer is in.
    let cpuWindow: { cpu: CpuReading; delivered: number; calls: number } | undefined;
    // Open loop: every 10 ms, send what is due, whatever the answers' speed.
    const started = performance.now();
    while (sent < total) {
      if (!cpuWindow && sent >= warmupCount) {
        const cpu = readCpu(services);
        const counters = await inventoryCounters(stack.inventory);
        cpuWindow = { cpu, delivered: counters.created, calls: counters.writeCalls };
      }
      const due = Math.min(total, Math.floor(dueAt((performance.now() - started) / 1000)));
      while (sent < due) {
        const request = create(++sent);
        inFlight.add(request);
        void request.finally(() => inFlight.delete(request));
      }
      progress(`${label}: ${sent}/${total} customers sent at ${SIZES.push_rate}/s`);
      await sleep(10);
    }
    await Promise.all(inFlight);
    const delivered = await waitForDeliveries(
      stack.inventory,
      createdAt.size,
      label,
      performance.now(),
      PUSH_DRAIN_TIMEOUT_MS,
    );
    if (delivered === null) say(`${label}: not every package request arrived within the timeout`);
    const cpuAfter = readCpu(services);
    const callsAfter = (await inventoryCounters(stack.inventory)).writeCalls;
    // The default mode also measures changes: each measured customer changed once, at the rate.
    const updateLag =
      mode === 'hybrid'
        ? await measureUpdateLag({
            crmUrl: stack.crm.url,
            inventoryUrl: stack.inventory.url,
            customerIds: [...createdAt.keys()].filter((id) => !warmupIds.has(id)),
            rate,
            drainTimeoutMs: PUSH_DRAIN_TIMEOUT_MS,
            progress,
          })
        : undefined;
    const memory = residentMemory(services);
    const cpuCustomers = (await inventoryCount(stack.inventory)) - (cpuWindow?.delivered ?? 0);
    const cpu = cpuWindow ? cpuPerCustomer(cpuWindow.cpu, cpuAfter, cpuCustomers) : null;
    // Read Inventory's created_at of each package request only now, so reading adds no load during the run.
    const lags: number[] = [];
    const warmupLags: number[] = [];
    const timeline: [number, number][] = [];
    let url: string | undefined = `${stack.inventory.url}/package-requests?limit=1000`;
    while (url) {
      const answer = await fetch(url);
      for (const request of (await answer.json()) as {
        customer_id: string;
        created_at: string;
      }[]) {
        const customerCreated = createdAt.get(request.customer_id);
        if (customerCreated === undefined) continue;
        const lag = Date.parse(request.created_at) - customerCreated;
        if (process.env.BENCH_LAG_TIMELINE) timeline.push([customerCreated, lag]);
        (warmupIds.has(request.customer_id) ? warmupLags : lags).push(lag);
      }
      const next = /<([^>]+)>;\s*rel="next"/.exec(answer.headers.get('link') ?? '')?.[1];
      url = next ? new URL(next, stack.inventory.url).toString() : undefined;
    }
    if (process.env.BENCH_LAG_TIMELINE) {
      const first = Math.min(...timeline.map(([at]) => at));
      const buckets = new Map<number, number>();
      for (const [at, lag] of timeline) {
        const second = Math.floor((at - first) / 1000);
        buckets.set(second, Math.max(buckets.get(second) ?? 0, lag));
      }
      say(
        [...buckets]
          .sort((a, b) => a[0] - b[0])
          .map(([s, max]) => `${s}:${max}`)
          .join(' '),
      );
    }
    lags.sort((a, b) => a - b);
    warmupLags.sort((a, b) => a - b);
    const result: LagResult = {
      mode: name,
      customers: createdAt.size - warmupIds.size,
      failed,
      p50_ms: percentile(lags, 0.5),
      p99_ms: percentile(lags, 0.99),
      max_ms: lags[lags.length - 1] ?? NaN,
      warmup: {
        customers: warmupIds.size,
        p50_ms: percentile(warmupLags, 0.5),
        p99_ms: percentile(warmupLags, 0.99),
        max_ms: warmupLags[warmupLags.length - 1] ?? NaN,
      },
      cpu_ms_per_customer: cpu,
      cpu_customers: cpuCustomers,
      inventory_calls_per_customer:
        // Calls counted over the CPU window, before the update lag's changes.
        cpuWindow && cpuCustomers > 0
          ? round((callsAfter - cpuWindow.calls) / cpuCustomers, 3)
          : null,
      ...(updateLag ? { update_lag: updateLag } : {}),
      memory,
      sorted: lags,
    };
    say(
      `push_lag   ${name.padEnd(8)} ${result.customers} customers at ${SIZES.push_rate}/s: ` +
        `p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, max ${result.max_ms} ms ` +
        `(warm-up: p50 ${result.warmup.p50_ms} ms, p99 ${result.warmup.p99_ms} ms), ` +
        `CPU ${describeCpu(cpu)}, ${result.inventory_calls_per_customer ?? 'n/a'} Inventory write calls per customer, ` +
        `rss ${memory.rss_mb_total ?? 'n/a'} MB (${memory.resident_together_mb ?? 'n/a'} with the node binary counted once)` +
        (failed > 0 ? ` (${failed} creates failed)` : '') +
        (lags.length < result.customers
          ? ` (${result.customers - lags.length} never delivered)`
          : ''),
    );
    if (updateLag) {
      say(
        `update_lag ${name.padEnd(8)} ${updateLag.changes} changes at ${updateLag.rate}/s: ` +
          `p50 ${updateLag.p50_ms} ms, p99 ${updateLag.p99_ms} ms, max ${updateLag.max_ms} ms` +
          (updateLag.failed > 0 ? ` (${updateLag.failed} changes failed)` : '') +
          (updateLag.not_applied > 0 ? ` (${updateLag.not_applied} never applied)` : ''),
      );
    }
    return result;
  } finally {
    await stack.stopAll();
  }
}
