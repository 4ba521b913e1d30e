/**
 * backlog, empty_poll and rss, for the platform and the baseline: a backlog of customers already
 * in the CRM when the consumer starts, how fast it is delivered, then an empty poll's time and
 * every process's memory.
 */
import { cpuPerCustomer, describeCpu, readCpu, type CpuReading } from './cpu.js';
import { median, round } from './numbers.js';
import { BASELINE_EMPTY_POLL_BUDGET_MS, BASELINE_WINDOW_MS, EMPTY_POLL_CALLS } from './options.js';
import { progress, say } from './output.js';
import { auditRun } from './audit.js';
import type { AuditRun, BacklogRun, System } from './results.js';
import { residentMemory, sleep, startBaseline, type Service } from './services.js';
import {
  inventoryCount,
  startIntegration,
  startOneProcess,
  startStack,
  waitForDeliveries,
} from './stack.js';

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

interface Drain {
  /** ms from the consumer's start until the whole backlog is in (projected for a window). */
  ms: number | null;
  cpu: ReturnType<typeof cpuPerCustomer>;
  cpuCustomers: number;
  /** Set when the drain was measured over a window and the rest projected at its rate. */
  window?: { seconds: number; delivered: number };
}

/** The platform's drain: until Inventory has the whole backlog; CPU from readiness to the end. */
async function platformDrain(
  services: Record<string, Service>,
  inventory: Service,
  size: number,
  label: string,
  started: number,
): Promise<Drain> {
  const cpuBefore = readCpu(services);
  const deliveredBefore = await inventoryCount(inventory);
  const ms = await waitForDeliveries(inventory, size, `backlog ${label}`, started);
  const cpuAfter = readCpu(services);
  const cpuCustomers = (await inventoryCount(inventory)) - deliveredBefore;
  return { ms, cpu: cpuPerCustomer(cpuBefore, cpuAfter, cpuCustomers), cpuCustomers };
}

/**
 * The baseline's drain. It lists every customer, then posts one at a time at a flat rate: at 727/s
 * a million would take 23 minutes. So past BASELINE_WINDOW_MS it is projected: the listing as
 * measured, then the rest at the rate and CPU per customer of the window after the first post.
 * The customers it had not reached are then marked handled without posting, for its empty poll.
 */
async function baselineDrain(
  services: Record<string, Service>,
  baseline: Service,
  inventory: Service,
  size: number,
  label: string,
  started: number,
): Promise<Drain> {
  const cpuAtStart = readCpu(services);
  let first: { at: number; delivered: number; cpu: CpuReading } | undefined;
  let delivered = 0;
  while (delivered < size && performance.now() - started < BASELINE_WINDOW_MS) {
    delivered = await inventoryCount(inventory);
    if (!first && delivered > 0)
      first = { at: performance.now(), delivered, cpu: readCpu(services) };
    progress(`backlog ${label}: ${delivered.toLocaleString('en')}/${size.toLocaleString('en')}`);
    if (delivered < size) await sleep(100);
  }
  const end = { at: performance.now(), cpu: readCpu(services) };
  if (delivered >= size || !first || delivered === first.delivered) {
    return {
      ms: delivered >= size ? end.at - started : null,
      cpu: cpuPerCustomer(cpuAtStart, end.cpu, delivered),
      cpuCustomers: delivered,
    };
  }
  const steadyCustomers = delivered - first.delivered;
  const rate = steadyCustomers / (end.at - first.at);
  // Each service's CPU: what the start (the listing) took once, plus the steady cost of the rest.
  const listing = cpuPerCustomer(cpuAtStart, first.cpu, size);
  const steady = cpuPerCustomer(first.cpu, end.cpu, steadyCustomers);
  const cpu = Object.fromEntries(
    Object.keys(steady ?? {}).map((name) => {
      const [once, each] = [listing?.[name], steady?.[name]];
      return [name, once == null || each == null ? null : round(once + each, 3)];
    }),
  ) as NonNullable<Drain['cpu']>;
  const skipped = await new Promise<number>((resolve) => {
    const onMessage = (message: { type?: string; skipped: number }) => {
      if (message.type !== 'skipped') return;
      baseline.child.off('message', onMessage);
      resolve(message.skipped);
    };
    baseline.child.on('message', onMessage);
    baseline.child.send({ type: 'skip-rest' });
  });
  progress(`backlog ${label}: ${skipped.toLocaleString('en')} customers marked handled unposted`);
  return {
    ms: first.at - started + (size - first.delivered) / rate,
    cpu,
    cpuCustomers: delivered,
    window: { seconds: round((end.at - started) / 1000, 1), delivered },
  };
}

/**
 * The three services in one process (`npm start`) with `size` customers waiting in the CRM, timed
 * from the process's start: the integration starts empty, with the whole backlog there.
 */
async function startOneProcessBacklog(size: number) {
  const { stack, integration, startedAt } = await startOneProcess(
    `platform-one-process-${size}`,
    'poll',
    {},
    size,
  );
  // One process: its CPU and memory are read once, under one name.
  return { stack, consumer: integration, services: { platform: integration }, started: startedAt };
}

/** CRM and Inventory with `size` customers waiting, then the consumer of `system` started. */
async function startBacklog(system: System, size: number) {
  const stack = await startStack(`${system}-${size}`, {}, size);
  try {
    // Timed from the consumer's start: it starts empty, with the whole backlog waiting in the CRM.
    const started = performance.now();
    const consumer =
      system === 'platform'
        ? await startIntegration(stack, 'poll', {})
        : await startBaseline({ CRM_URL: stack.crm.url, INVENTORY_URL: stack.inventory.url });
    const services = {
      crm: stack.crm,
      inventory: stack.inventory,
      [system === 'platform' ? 'integration' : 'baseline']: consumer,
    };
    stack.stopAll = ((stopAll) => async () => {
      await consumer.stop();
      await stopAll();
    })(stack.stopAll);
    return { stack, consumer, services, started };
  } catch (error) {
    await stack.stopAll();
    throw error;
  }
}

/**
 * One backlog of `size` customers for `system`, then its empty poll and memory; with `oneProcess`
 * (the platform only), the three services in one process as `npm start` runs them, without the
 * audit (its memory figures are the integration process's).
 */
export async function backlogRun(
  system: System,
  size: number,
  oneProcess = false,
): Promise<BacklogRun> {
  const label = `${system}${oneProcess ? ', one process,' : ''} ${size.toLocaleString('en')}`;
  const { stack, consumer, services, started } = oneProcess
    ? await startOneProcessBacklog(size)
    : await startBacklog(system, size);
  try {
    // CPU is measured from the consumer's readiness (its start-up is not per customer) to the end.
    const { ms, cpu, cpuCustomers, window } =
      system === 'platform'
        ? await platformDrain(services, stack.inventory, size, label, started)
        : await baselineDrain(services, consumer, stack.inventory, size, label, started);
    const backlogPerS = ms === null ? null : round(size / (ms / 1000), 0);
    let emptyPoll: { ms: number; calls: number } | null = null;
    if (ms !== null) {
      progress(`empty_poll ${label}`);
      emptyPoll =
        system === 'platform'
          ? await platformEmptyPoll(stack.crm, size)
          : await baselineEmptyPoll(consumer);
    }
    // The platform audits what it delivered: time, and the integration's memory meanwhile.
    let audit: AuditRun | null = null;
    if (ms !== null && system === 'platform' && !oneProcess)
      audit = await auditRun(consumer, label);
    const {
      rss_mb: rss,
      rss_mb_total: total,
      rss_file_mb: rssFile,
      resident_together_mb: together,
    } = residentMemory(services);
    say(
      `${(oneProcess ? `${system}, one process` : system).padEnd(8)} ${size.toLocaleString('en').padStart(9)} customers: ` +
        `backlog ${backlogPerS ?? 'timed out'} customers/s` +
        (window
          ? ` (projected from the first ${window.seconds} s, ${window.delivered.toLocaleString('en')} delivered)`
          : '') +
        ', ' +
        `empty poll ${emptyPoll ? `${round(emptyPoll.ms, 3)} ms (median of ${emptyPoll.calls})` : 'n/a'}, ` +
        `rss ${total ?? 'n/a'} MB (${Object.entries(rss)
          .map(([name, mb]) => `${name} ${mb}`)
          .join(', ')}; ${together ?? 'n/a'} MB with the node binary counted once), ` +
        `CPU ${describeCpu(cpu)}` +
        (audit
          ? `; audit ${audit.seconds} s (${audit.per_s} customers/s, drift ${audit.drift_total}), integration rss ${audit.integration_rss_before_mb} MB before, ${audit.integration_rss_peak_mb} MB peak`
          : ''),
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
      ...(window ? { measured_window: window } : {}),
      audit,
    };
  } finally {
    await stack.stopAll();
  }
}
