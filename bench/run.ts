/**
 * `npm run bench [-- --quick]`: runs the real services (embedded SQLite, one temporary DATA_DIR per
 * run, free ports) through the scenarios of issue 7 and writes bench/results.json and
 * bench/results.svg; a full run also writes docs/figures/bench.md. See docs/benchmarks.md for what
 * each scenario measures.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { bulkInsertCustomers } from './bulk-insert.js';
import { renderChart, type LagSeries, type ThroughputBar } from './chart.js';
import { cpuPerCustomer, describeCpu, readCpu, type CpuReading } from './cpu.js';
import { formatTable, writeFiguresMarkdown } from './figures.js';
import { median, percentile, round } from './numbers.js';
import { printProfileSummaries } from './profile-summary.js';
import { measureUpdateLag } from './update-lag.js';
import type { BacklogRun, BenchResults, LagFigures, System } from './results.js';
import {
  DIST,
  rssFileMb,
  rssMb,
  serviceNames,
  sleep,
  startBaseline,
  startService,
  tempDataDir,
  type Service,
} from './services.js';

const quick = process.argv.includes('--quick');
/** `--only=backlog,push_lag`: run just those scenarios (empty_poll and rss come with backlog). */
const only = process.argv
  .find((arg) => arg.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
const selected = (scenario: 'push_lag' | 'backlog') => !only || only.includes(scenario);
/** `--platform-only`: skip the baseline (when profiling or tuning the platform). */
const platformOnly = process.argv.includes('--platform-only');
/** `--profile`: every service writes a V8 CPU profile here, summarised at the end. */
const profileDir = process.argv.includes('--profile')
  ? path.join(os.tmpdir(), `mip-bench-profiles-${Date.now()}`)
  : undefined;
if (profileDir) {
  process.env.BENCH_PROFILE_DIR = profileDir;
  process.stdout.write(`CPU profiles of every service go to ${profileDir}\n`);
}
const SIZES = quick
  ? {
      push_rate: 200,
      push_seconds: 5,
      push_warmup_seconds: 2,
      backlog: 5_000,
      empty_poll_small: 1_000,
      empty_poll_large: 10_000,
    }
  : {
      push_rate: 500,
      push_seconds: 20,
      push_warmup_seconds: 10,
      backlog: 100_000,
      empty_poll_small: 1_000,
      empty_poll_large: 1_000_000,
    };
/** `--backlog=N`: the backlog scenario's size instead of the mode's (e.g. to profile one size). */
const backlogArg = process.argv.find((arg) => arg.startsWith('--backlog='));
if (backlogArg) SIZES.backlog = Number(backlogArg.slice('--backlog='.length));
/** `--modes=webhook,amqp`: run push_lag in just these modes (a partial run). */
const modesArg = process.argv
  .find((arg) => arg.startsWith('--modes='))
  ?.slice('--modes='.length)
  .split(',');
/** `--rate=N`: push_lag's customers per second instead of the mode's (a partial run). */
const rateArg = process.argv.find((arg) => arg.startsWith('--rate='));
if (rateArg) SIZES.push_rate = Number(rateArg.slice('--rate='.length));
/** `--sizes=1000,100000`: run backlog/empty_poll/rss at just these sizes (a partial run). */
const sizesArg = process.argv
  .find((arg) => arg.startsWith('--sizes='))
  ?.slice('--sizes='.length)
  .split(',')
  .map(Number);

/** Longest wait for one run's deliveries; a run that takes longer is reported as not finished. */
const DELIVERY_TIMEOUT_MS = quick ? 60_000 : 60 * 60_000;
/** Longest wait, after the last create, for push_lag's deliveries to arrive. */
const PUSH_DRAIN_TIMEOUT_MS = 60_000;
const EMPTY_POLL_CALLS = 200;
/** Baseline polls list every customer, so at 1,000,000 they are slow: fewer calls, bounded time. */
const BASELINE_EMPTY_POLL_BUDGET_MS = quick ? 2_000 : 60_000;

const BENCH_DIR = fileURLToPath(new URL('../../bench/', import.meta.url));
/** The figures the docs show: written by full runs only, so quick runs (CI) leave it as it is. */
/** Where a quick run writes its results.json and results.svg (git ignores it). */
const QUICK_DIR = fileURLToPath(new URL('../../test-artifacts/bench-quick/', import.meta.url));
const FIGURES_FILE = fileURLToPath(new URL('../../docs/figures/bench.md', import.meta.url));
const tty = process.stdout.isTTY === true;

// ---------- output ----------

let lastPlainProgress = 0;
/** A progress line redrawn in place on a terminal; an occasional plain line otherwise (CI logs). */
function progress(line: string): void {
  if (tty) {
    process.stdout.write(`\r\x1b[K${line}`);
  } else if (Date.now() - lastPlainProgress > 5_000) {
    lastPlainProgress = Date.now();
    process.stdout.write(`  … ${line}\n`);
  }
}
function say(line: string): void {
  if (tty) process.stdout.write('\r\x1b[K');
  process.stdout.write(`${line}\n`);
}

// ---------- the services ----------

interface Stack {
  crm: Service;
  inventory: Service;
  dataDir: string;
  stopAll(): Promise<void>;
}

/** CRM and Inventory on a fresh DATA_DIR; with `customers`, that many already in the CRM. */
async function startStack(
  label: string,
  env: Record<string, string>,
  customers = 0,
): Promise<Stack> {
  const { dir, cleanup } = tempDataDir(label);
  const common = { DATA_DIR: dir, ...env };
  if (customers > 0) {
    // Start the CRM once so its own migrations create the schema, then fill it while it is stopped.
    const migrate = await startService('crm', 'crm/main.js', 'CRM_PORT', common);
    await migrate.stop();
    progress(
      `${label}: inserting ${customers.toLocaleString('en')} customers into crm.sqlite directly`,
    );
    bulkInsertCustomers(
      path.join(dir, 'crm.sqlite'),
      customers,
      `${label}-${randomBytes(3).toString('hex')}`,
    );
  }
  const [crm, inventory] = await Promise.all([
    startService('crm', 'crm/main.js', 'CRM_PORT', common),
    startService('inventory', 'inventory/main.js', 'INVENTORY_PORT', common),
  ]);
  return {
    crm,
    inventory,
    dataDir: dir,
    stopAll: async () => {
      await Promise.all([crm, inventory].map((service) => service.stop()));
      cleanup();
    },
  };
}

function startIntegration(
  stack: Stack,
  mode: string,
  env: Record<string, string>,
): Promise<Service> {
  return startService('integration', 'integration/main.js', 'INTEGRATION_PORT', {
    DATA_DIR: stack.dataDir,
    SYNC_MODE: mode,
    CRM_URL: stack.crm.url,
    INVENTORY_URL: stack.inventory.url,
    ...env,
  });
}

/** Package requests Inventory has created, from its Prometheus counter (one cheap GET). */
async function inventoryCount(inventory: Service): Promise<number> {
  const text = await (await fetch(`${inventory.url}/metrics`)).text();
  const match = /^inventory_package_requests_created_total(?:\{[^}]*\})? (\d+)/m.exec(text);
  return match ? Number(match[1]) : 0;
}

/** Waits until Inventory holds `target` package requests; answers the ms it took, or null on timeout. */
async function waitForDeliveries(
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

// ---------- push_lag ----------

type LagResult = LagFigures & { sorted: number[] };

async function pushLag(mode: string, env: Record<string, string>): Promise<LagResult | null> {
  const label = `push_lag ${mode}`;
  const stack = await startStack(`push-${mode}`, env);
  try {
    const integration = await startIntegration(stack, mode, env);
    stack.stopAll = ((stopAll) => async () => {
      await integration.stop();
      await stopAll();
    })(stack.stopAll);
    const services = { crm: stack.crm, inventory: stack.inventory, integration };
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
    let cpuWindow: { cpu: CpuReading; delivered: number } | undefined;
    // Open loop: every 10 ms, send what is due, whatever the answers' speed.
    const started = performance.now();
    while (sent < total) {
      if (!cpuWindow && sent >= warmupCount) {
        cpuWindow = { cpu: readCpu(services), delivered: await inventoryCount(stack.inventory) };
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
      mode,
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
      ...(updateLag ? { update_lag: updateLag } : {}),
      sorted: lags,
    };
    say(
      `push_lag   ${mode.padEnd(8)} ${result.customers} customers at ${SIZES.push_rate}/s: ` +
        `p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, max ${result.max_ms} ms ` +
        `(warm-up: p50 ${result.warmup.p50_ms} ms, p99 ${result.warmup.p99_ms} ms), ` +
        `CPU ${describeCpu(cpu)}` +
        (failed > 0 ? ` (${failed} creates failed)` : '') +
        (lags.length < result.customers
          ? ` (${result.customers - lags.length} never delivered)`
          : ''),
    );
    if (updateLag) {
      say(
        `update_lag ${mode.padEnd(8)} ${updateLag.changes} changes at ${updateLag.rate}/s: ` +
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

// ---------- backlog, empty_poll and rss, for the platform and the baseline ----------

/** Times one empty read of the CRM's feed after its last position, the way the poller reads it. */
async function platformEmptyPoll(
  crm: Service,
  lastPosition: number,
): Promise<{ ms: number; calls: number }> {
  const times: number[] = [];
  for (let i = 0; i < EMPTY_POLL_CALLS; i++) {
    const started = performance.now();
    const answer = await fetch(`${crm.url}/events?after=${lastPosition}&limit=500&wait=0`);
    const events = (await answer.json()) as unknown[];
    times.push(performance.now() - started);
    if (events.length > 0) throw new Error(`the feed was not empty after position ${lastPosition}`);
  }
  return { ms: median(times), calls: times.length };
}

/** Asks the baseline process for polls (each lists every customer and finds nothing new). */
async function baselineEmptyPoll(baseline: Service): Promise<{ ms: number; calls: number }> {
  const times: number[] = [];
  const started = performance.now();
  while (
    times.length < 3 ||
    (times.length < EMPTY_POLL_CALLS && performance.now() - started < BASELINE_EMPTY_POLL_BUDGET_MS)
  ) {
    const answer = await new Promise<{ ms: number; created: number }>((resolve) => {
      const onMessage = (message: { type?: string; ms: number; created: number }) => {
        if (message.type !== 'polled') return;
        baseline.child.off('message', onMessage);
        resolve(message);
      };
      baseline.child.on('message', onMessage);
      baseline.child.send({ type: 'poll' });
    });
    if (answer.created > 0) throw new Error('the baseline found new customers in an empty poll');
    times.push(answer.ms);
  }
  return { ms: median(times), calls: times.length };
}

async function backlogRun(system: System, size: number): Promise<BacklogRun> {
  const label = `${system} ${size.toLocaleString('en')}`;
  const stack = await startStack(`${system}-${size}`, {}, size);
  let consumer: Service | undefined;
  try {
    // Timed from the consumer's start: it starts empty, with the whole backlog waiting in the CRM.
    const started = performance.now();
    consumer =
      system === 'platform'
        ? await startIntegration(stack, 'poll', {})
        : await startBaseline({ CRM_URL: stack.crm.url, INVENTORY_URL: stack.inventory.url });
    const services = {
      crm: stack.crm,
      inventory: stack.inventory,
      [system === 'platform' ? 'integration' : 'baseline']: consumer,
    };
    // CPU is measured from the consumer's readiness (its start-up is not per customer) to the end.
    const cpuBefore = readCpu(services);
    const deliveredBefore = await inventoryCount(stack.inventory);
    const ms = await waitForDeliveries(stack.inventory, size, `backlog ${label}`, started);
    const cpuAfter = readCpu(services);
    const cpuCustomers = (await inventoryCount(stack.inventory)) - deliveredBefore;
    const cpu = cpuPerCustomer(cpuBefore, cpuAfter, cpuCustomers);
    const backlogPerS = ms === null ? null : round(size / (ms / 1000), 0);
    let emptyPoll: { ms: number; calls: number } | null = null;
    if (ms !== null) {
      progress(`empty_poll ${label}`);
      emptyPoll =
        system === 'platform'
          ? await platformEmptyPoll(stack.crm, size)
          : await baselineEmptyPoll(consumer);
    }
    const byProcess = (read: (pid: number | undefined) => number | null) =>
      Object.fromEntries(
        Object.entries(services).map(([name, service]) => [name, read(service.child.pid)]),
      );
    const rss = byProcess(rssMb);
    const rssFile = byProcess(rssFileMb);
    const values = Object.values(rss);
    const fileValues = Object.values(rssFile);
    const total = values.every((value) => value !== null)
      ? round(
          values.reduce((a, b) => a! + b!, 0)!,
          1,
        )
      : null;
    const together =
      total !== null && fileValues.every((value) => value !== null)
        ? round(
            total -
              fileValues.reduce((a, b) => a! + b!, 0)! +
              Math.max(...(fileValues as number[])),
            1,
          )
        : null;
    say(
      `${system.padEnd(8)} ${size.toLocaleString('en').padStart(9)} customers: ` +
        `backlog ${backlogPerS ?? 'timed out'} customers/s, ` +
        `empty poll ${emptyPoll ? `${round(emptyPoll.ms, 3)} ms (median of ${emptyPoll.calls})` : 'n/a'}, ` +
        `rss ${total ?? 'n/a'} MB (${Object.entries(rss)
          .map(([name, mb]) => `${name} ${mb}`)
          .join(', ')}; ${together ?? 'n/a'} MB with the node binary counted once), ` +
        `CPU ${describeCpu(cpu)}`,
    );
    return {
      size,
      backlog_per_s: backlogPerS,
      empty_poll_ms: emptyPoll ? round(emptyPoll.ms, 3) : null,
      empty_poll_calls: emptyPoll?.calls ?? 0,
      rss_mb: rss,
      rss_mb_total: total,
      rss_file_mb: rssFile,
      resident_together_mb: together,
      cpu_ms_per_customer: cpu,
      cpu_customers: cpuCustomers,
    };
  } finally {
    await consumer?.stop();
    await stack.stopAll();
  }
}

// ---------- main ----------

/** `git rev-parse --short HEAD`, with `-dirty` when the tree has changes; null outside git. */
function currentCommit(): string | null {
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: BENCH_DIR,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  try {
    const commit = git('rev-parse', '--short', 'HEAD').trim();
    return git('status', '--porcelain').trim() === '' ? commit : `${commit}-dirty`;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const benchStarted = performance.now();
  // Read before the run writes its results into the tree.
  const commit = currentCommit();
  const machine = {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    memory_gb: round(os.totalmem() / 1024 ** 3, 1),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
  say(
    `Bench (${quick ? 'quick' : 'full'}) on ${machine.cpus} CPUs, ${machine.memory_gb} GB, Node ${machine.node}; ` +
      `SQLite, services with LOG_LEVEL=warn. Customers for backlog/empty_poll are inserted into crm.sqlite directly.`,
  );

  // push_lag: webhook and hybrid always, amqp when a broker is configured.
  const modes: [string, Record<string, string>][] = [
    ['webhook', {}],
    ['hybrid', {}],
  ];
  if (process.env.AMQP_URL) {
    modes.push([
      'amqp',
      {
        AMQP_URL: process.env.AMQP_URL,
        AMQP_NAME_PREFIX: `bench-${randomBytes(4).toString('hex')}.`,
      },
    ]);
  }
  const lag: LagResult[] = [];
  const deleteAmqpTopology = async (env: Record<string, string>) => {
    if (!env.AMQP_URL || !env.AMQP_NAME_PREFIX) return;
    const amqp = (await import(pathToFileURL(path.join(DIST, 'core/amqp.js')).href)) as {
      deleteTopology: (url: string, prefix: string) => Promise<void>;
    };
    await amqp.deleteTopology(env.AMQP_URL, env.AMQP_NAME_PREFIX);
  };
  for (const [mode, env] of selected('push_lag')
    ? modes.filter(([mode]) => !modesArg || modesArg.includes(mode))
    : []) {
    try {
      const result = await pushLag(mode, env);
      if (result) lag.push(result);
    } finally {
      await deleteAmqpTopology(env);
    }
  }

  // backlog, empty_poll and rss at each size, platform then baseline, against identical stacks.
  const sizes = (
    sizesArg ?? [...new Set([SIZES.empty_poll_small, SIZES.backlog, SIZES.empty_poll_large])]
  ).sort((a, b) => a - b);
  const runs: Record<System, BacklogRun[]> = { platform: [], baseline: [] };
  for (const size of selected('backlog') ? sizes : []) {
    for (const system of platformOnly
      ? (['platform'] as const)
      : (['platform', 'baseline'] as const))
      runs[system].push(await backlogRun(system, size));
  }
  const at = (system: System, size: number) => runs[system].find((run) => run.size === size);

  // Push lag in the headline is the default mode's (hybrid); every mode is in push_lag.
  const headlineLag = lag.find((result) => result.mode === 'hybrid') ?? lag[0];
  const results: BenchResults = {
    generated_at: new Date().toISOString(),
    commit,
    quick,
    machine,
    sizes: SIZES,
    notes: [
      'push lag = package request created_at (Inventory) - customer created_at (CRM), both server clocks on this machine, ms resolution',
      'push_lag_p50_ms/p99_ms are the hybrid (default) mode; every mode is under push_lag',
      'push lag is measured at the steady rate after a warm-up on freshly started services that ramps from a tenth of the rate to all of it over sizes.push_warmup_seconds; the warm-up figures are under push_lag[].warmup',
      'services run with their defaults (DELIVERY_BATCH_SIZE 250, DELIVERY_CONCURRENCY 8, SQLite); the load generator and the baseline share the same 2 CPUs',
      'backlog and empty_poll customers are inserted into the CRM SQLite file directly, not through the API',
      'empty_poll platform = GET /events?after=<last>&limit=500&wait=0; baseline = one full list of all customers finding nothing new',
      "CPU per customer = user + system CPU ms of each service process (all its threads, from /proc/<pid>/stat, 10 ms steps) over a window, divided by the package requests Inventory created in it; push: from the end of the warm-up until every customer is delivered, at sizes.push_rate (the services' idle work included); backlog: from the consumer's readiness until the backlog is delivered, at sizes.backlog",
      'cpu_ms_per_customer_push is the hybrid (default) mode; every mode is under push_lag',
      quick
        ? 'quick mode: the "_1m" figures are at sizes.empty_poll_large, the "_1k" at sizes.empty_poll_small'
        : 'full mode',
    ],
    platform: {
      push_lag_p50_ms: headlineLag?.p50_ms ?? null,
      push_lag_p99_ms: headlineLag?.p99_ms ?? null,
      push_lag_max_ms: headlineLag?.max_ms ?? null,
      backlog_per_s: at('platform', SIZES.backlog)?.backlog_per_s ?? null,
      empty_poll_ms_1k: at('platform', SIZES.empty_poll_small)?.empty_poll_ms ?? null,
      empty_poll_ms_1m: at('platform', SIZES.empty_poll_large)?.empty_poll_ms ?? null,
      rss_mb_total_1m: at('platform', SIZES.empty_poll_large)?.rss_mb_total ?? null,
      resident_together_mb_1m: at('platform', SIZES.empty_poll_large)?.resident_together_mb ?? null,
      cpu_ms_per_customer_push: headlineLag?.cpu_ms_per_customer ?? null,
      cpu_ms_per_customer_backlog: at('platform', SIZES.backlog)?.cpu_ms_per_customer ?? null,
    },
    baseline: {
      backlog_per_s: at('baseline', SIZES.backlog)?.backlog_per_s ?? null,
      empty_poll_ms_1k: at('baseline', SIZES.empty_poll_small)?.empty_poll_ms ?? null,
      empty_poll_ms_1m: at('baseline', SIZES.empty_poll_large)?.empty_poll_ms ?? null,
      rss_mb_total_1m: at('baseline', SIZES.empty_poll_large)?.rss_mb_total ?? null,
      resident_together_mb_1m: at('baseline', SIZES.empty_poll_large)?.resident_together_mb ?? null,
      cpu_ms_per_customer_backlog: at('baseline', SIZES.backlog)?.cpu_ms_per_customer ?? null,
    },
    push_lag: lag.map(({ sorted: _sorted, ...rest }) => rest),
    runs,
    duration_s: 0,
  };

  // Final table: platform vs baseline, with the ratio in the direction where > 1 means the platform is better.
  say('');
  for (const line of formatTable(results)) say(line);

  const lagSeries: LagSeries[] = lag.map((result) => ({
    label: `platform, ${result.mode}`,
    sorted: result.sorted,
  }));
  const bars: ThroughputBar[] = sizes.map((size) => ({
    size,
    platform: at('platform', size)?.backlog_per_s ?? null,
    baseline: at('baseline', size)?.backlog_per_s ?? null,
  }));
  results.duration_s = round((performance.now() - benchStarted) / 1000, 1);
  if (profileDir) printProfileSummaries(profileDir, serviceNames);
  if (only || platformOnly || sizesArg || modesArg || rateArg) {
    // A partial run must not overwrite the figures docs/figures/bench.md shows.
    say(`\nPartial run in ${results.duration_s} s; nothing written.`);
    return;
  }
  const subtitle = `${quick ? 'quick mode' : 'full mode'}, ${machine.cpus} CPUs, ${machine.memory_gb} GB, Node ${machine.node}, SQLite`;
  // A quick run's files go beside the test output: the committed ones stay the full run's.
  const outDir = quick ? QUICK_DIR : BENCH_DIR;
  mkdirSync(outDir, { recursive: true });
  const written = ['results.json', 'results.svg'].map((name) => path.join(outDir, name));
  writeFileSync(written[1]!, await renderChart(lagSeries, bars, subtitle));
  writeFileSync(written[0]!, `${JSON.stringify(results, null, 2)}\n`);
  if (quick) {
    say(`\nWrote ${written.join(' and ')} in ${results.duration_s} s.`);
    return;
  }
  await writeFiguresMarkdown(results, FIGURES_FILE);
  say(
    `\nWrote bench/results.json, bench/results.svg and docs/figures/bench.md in ${results.duration_s} s.`,
  );
}

if (process.argv.includes('--figures-only')) {
  // Renders docs/figures/bench.md again from bench/results.json, running nothing (after a change
  // to how the figures are shown). Quick results are not the docs' figures.
  const results = JSON.parse(
    readFileSync(path.join(BENCH_DIR, 'results.json'), 'utf8'),
  ) as BenchResults;
  if (results.quick) {
    throw new Error(
      'bench/results.json holds a quick run; run `npm run bench` (full) before rendering the figures',
    );
  }
  await writeFiguresMarkdown(results, FIGURES_FILE);
  say('Wrote docs/figures/bench.md from bench/results.json.');
} else {
  await main();
}
