/**
 * The reliability battery's incidents in one mode (test/chaos/battery.test.ts has the rest): a
 * stalled instance, a retry storm, poison items and a graceful shutdown under load, each ending by
 * counting outcomes in the three databases.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ChaosPlatform, FULL_SCALE, scaled, sleep } from '../support/chaos.js';
import {
  DRAIN_BOUND_MS,
  SEED,
  drainFigure,
  duplicateCreates,
  exactlyOnce,
  metric,
  report,
} from '../support/battery.js';

let platform: ChaosPlatform | undefined;
afterEach(async () => {
  await platform?.stop();
  platform = undefined;
});

describe('a stalled instance', () => {
  it('SIGSTOPped past its claims among three, then SIGCONTed → one package request per customer, its late completion refused and counted', async () => {
    const startedAt = performance.now();
    platform = await ChaosPlatform.start({
      mode: 'hybrid',
      seed: SEED,
      instances: 3,
      // Small batches, so every instance has calls in flight when one is stopped.
      integrationEnv: { DELIVERY_BATCH_SIZE: '5' },
    });
    const p = platform;
    // Inventory answers slowly, so the stopped instance is caught in the middle of calls.
    p.proxy.plan = { rate: 1, kinds: ['delay'], delayMs: 300 };
    const count = scaled(200, 2_000);
    const creation = p.createCustomers(count, 50);
    await sleep(2_000);
    const stalled = p.instances[0]!;
    // Stop it while it has calls in flight (its claims in the database), so it has something
    // to complete late.
    const { instance_id: stalledId } = (await (
      await fetch(`${stalled.url}/api/status`)
    ).json()) as { instance_id: string };
    await p.waitUntil(async () => (await p.claimedBy(stalledId)) > 0, 'a claim by the instance');
    stalled.pause();
    // Longer than the claims (max(LEASE_MS, 3 × REQUEST_TIMEOUT_MS) = 3 s): the others take over.
    await sleep(5_000);
    stalled.resume();
    await creation;
    p.proxy.plan = { rate: 0, kinds: [] };
    const drainMs = await p.waitForAll(DRAIN_BOUND_MS);
    const counts = await p.outcome();
    let late = 0;
    for (const instance of p.instances) {
      late += await metric(
        instance.url,
        'integration_deliveries_total',
        'outcome="late_completion"',
      );
    }
    const duplicate_creates = await duplicateCreates(p);
    // Calls for a customer that reached Inventory again (the stalled instance's call was already
    // on the wire): each was answered from its idempotency key, never a second create.
    const repeatedCalls = [...p.proxy.deliveredCallsByCustomer().values()].reduce(
      (sum, calls) => sum + Math.max(0, calls - 1),
      0,
    );
    report('stalled_instance', 'hybrid', counts, startedAt, {
      instances: 3,
      stopped_s: 5,
      late_completions: late,
      repeated_calls: repeatedCalls,
      duplicate_creates,
      drain_ms: drainFigure(drainMs),
    });
    expect(counts).toMatchObject({ ...exactlyOnce(count), dead_letters: 0 });
    expect(duplicate_creates).toBe(0);
    // Whether the stopped instance still had a call to finish when it woke depends on timing at
    // the reduced size (0 in 1 of 3 PostgreSQL runs under a loaded CI): counted and reported
    // there, required at full size.
    if (FULL_SCALE) expect(late).toBeGreaterThanOrEqual(1);
  }, 600_000);
});

describe('a retry storm', () => {
  const stormMs = scaled(6_000, 60_000);
  const retryAfterS = scaled(2, 5);
  it(`Inventory answers 503 with Retry-After: ${retryAfterS} for ${stormMs / 1000} s → no call before Retry-After, the circuit opens, recovery without a thundering herd`, async () => {
    const startedAt = performance.now();
    platform = await ChaosPlatform.start({ mode: 'hybrid', seed: SEED });
    const p = platform;
    let storming = true;
    p.proxy.answer = () =>
      storming
        ? {
            status: 503,
            body: { title: 'Service Unavailable', status: 503, detail: 'storm' },
            headers: { 'retry-after': String(retryAfterS) },
          }
        : undefined;
    const count = 100;
    await p.createCustomers(count, 50);
    const circuitStates = new Set<string>();
    const stormEnds = performance.now() + stormMs;
    while (performance.now() < stormEnds) {
      const status = (await (await fetch(`${p.instances[0]!.url}/api/status`)).json()) as {
        circuit: string;
      };
      circuitStates.add(status.circuit);
      await sleep(100);
    }
    storming = false;
    const recoveredAt = Date.now();
    const drainMs = await p.waitForAll(DRAIN_BOUND_MS);
    const counts = await p.outcome();

    // Per customer, the gaps between the calls that carried it.
    const callsOf = new Map<string, number[]>();
    for (const call of p.proxy.calls) {
      for (const item of call.items) {
        callsOf.set(item.customerId, [...(callsOf.get(item.customerId) ?? []), call.at]);
      }
    }
    let early = 0;
    for (const times of callsOf.values()) {
      for (let i = 1; i < times.length; i += 1) {
        // The answer that carried Retry-After came back a little after the call was made.
        if (times[i]! - times[i - 1]! < retryAfterS * 1_000 - 50) early += 1;
      }
    }
    const firstSecond = p.proxy.calls.filter(
      (c) => c.at >= recoveredAt && c.at < recoveredAt + 1_000,
    ).length;
    report('retry_storm', 'hybrid', counts, startedAt, {
      storm_s: stormMs / 1000,
      retry_after_s: retryAfterS,
      calls: p.proxy.calls.length,
      calls_before_retry_after: early,
      circuit_opened: circuitStates.has('open'),
      calls_in_first_second_after: firstSecond,
      drain_ms: drainFigure(drainMs),
    });
    expect(early).toBe(0);
    expect(circuitStates.has('open')).toBe(true);
    // Due work goes out in batches, at most DELIVERY_CONCURRENCY (8) calls at once.
    expect(firstSecond).toBeLessThanOrEqual(16);
    expect(counts).toMatchObject({ ...exactlyOnce(count), dead_letters: 0 });
  }, 600_000);
});

describe('poison items', () => {
  it('1% permanent 422 → dead letters after one attempt; after the fix, replaying twice delivers each exactly once', async () => {
    const startedAt = performance.now();
    platform = await ChaosPlatform.start({ mode: 'hybrid', seed: SEED });
    const p = platform;
    // The customers arrive while the integration service is stopped, so every 100th one can be
    // marked as poison before anything is sent.
    const [instance] = p.instances;
    await instance!.stop('SIGTERM');
    const count = scaled(300, 2_000);
    const { ids } = await p.createCustomers(count, 200);
    const poisoned = new Set(ids.filter((_, index) => index % 100 === 50));
    p.proxy.answer = (call) =>
      call.customerId !== undefined && poisoned.has(call.customerId)
        ? { status: 422, body: { title: 'Unprocessable', status: 422, detail: 'on hold' } }
        : undefined;
    await instance!.start();
    await p.waitForAll(DRAIN_BOUND_MS);
    const states = await p.deliveryStates();
    const attemptsOfPoison = p.proxy.calls
      .flatMap((c) => c.items)
      .filter((i) => poisoned.has(i.customerId)).length;
    expect(states.dead).toBe(poisoned.size);
    expect(attemptsOfPoison).toBe(poisoned.size);

    // The fix, then two replays at once.
    p.proxy.answer = undefined;
    const replay = () => fetch(`${instance!.url}/api/dead-letters/replay`, { method: 'POST' });
    await Promise.all([replay(), replay()]);
    const drainMs = await p.waitForAll(DRAIN_BOUND_MS);
    const counts = await p.outcome();
    const duplicate_creates = await duplicateCreates(p);
    report('poison_items', 'hybrid', counts, startedAt, {
      poisoned: poisoned.size,
      attempts_before_dead_letter: attemptsOfPoison / poisoned.size,
      replays: 2,
      duplicate_creates,
      drain_ms: drainFigure(drainMs),
    });
    expect(counts).toMatchObject({ ...exactlyOnce(count), dead_letters: 0 });
    expect(duplicate_creates).toBe(0);
  }, 600_000);
});

/** The integration's lease in the shutdown test: longer than the test itself. */
const HANDED_OVER_LEASE_MS = 60_000;

describe('graceful shutdown under load', () => {
  it('SIGTERM to the CRM and to the integration service while 200 customers/s arrive → no request cut, exit 0 within 25 s, the next process resumes without waiting out the lease its predecessor released', async () => {
    const startedAt = performance.now();
    // A lease (and so a claim) far longer than the test: the next integration process can only
    // resume in time if the one stopped handed its lease back, not by waiting for it to lapse.
    platform = await ChaosPlatform.start({
      mode: 'hybrid',
      seed: SEED,
      integrationEnv: { LEASE_MS: String(HANDED_OVER_LEASE_MS) },
    });
    const p = platform;
    const seconds = scaled(4, 20);
    const creation = p.createCustomers(200 * seconds, 200, { retry: true });
    await sleep(1_000);

    // The CRM: requests it accepted are answered; new ones are refused until the next one is up.
    const crmStopped = performance.now();
    const crmExit = await p.crm.stop('SIGTERM');
    const crmExitMs = performance.now() - crmStopped;
    const crmRestarted = performance.now();
    await p.crm.start();
    const crmUpMs = performance.now() - crmRestarted;

    await sleep(1_000);
    const [old] = p.instances;
    const integrationStopped = performance.now();
    const integrationExit = await old!.stop('SIGTERM');
    const integrationExitMs = performance.now() - integrationStopped;
    // Customers that arrive while no integration process runs (the load above may be over by now
    // on a slow machine): the next process must pick them up at once.
    await p.createCustomers(20, 200, { retry: true, prefix: `while-down-${SEED}` });
    const before = (await p.packageRequestsByCustomer()).size;
    const integrationRestarted = performance.now();
    await old!.start();
    const integrationUpMs = performance.now() - integrationRestarted;
    // Customers arrived while it was down: the next process delivers them as soon as it is up.
    const ready = performance.now();
    let deliveringAfterMs = Number.POSITIVE_INFINITY;
    while (performance.now() - ready < HANDED_OVER_LEASE_MS) {
      if ((await p.packageRequestsByCustomer()).size > before) {
        deliveringAfterMs = performance.now() - ready;
        break;
      }
      await sleep(20);
    }
    const { failed, cut } = await creation;
    const drainMs = await p.waitForAll(DRAIN_BOUND_MS);
    const counts = await p.outcome();
    report('graceful_shutdown', 'hybrid', counts, startedAt, {
      requests_cut: cut,
      crm_exit_code: String(crmExit),
      crm_exit_ms: Math.round(crmExitMs),
      crm_next_up_ms: Math.round(crmUpMs),
      integration_exit_code: String(integrationExit),
      integration_exit_ms: Math.round(integrationExitMs),
      integration_next_up_ms: Math.round(integrationUpMs),
      integration_delivering_after_up_ms: Math.round(deliveringAfterMs),
      drain_ms: drainFigure(drainMs),
      client_gave_up: failed,
    });
    expect(crmExit).toBe(0);
    expect(integrationExit).toBe(0);
    expect(crmExitMs).toBeLessThan(25_000);
    expect(integrationExitMs).toBeLessThan(25_000);
    // How long booting and resuming take depends on how busy the machine is: reported, not
    // asserted. What must hold is that the next process resumed without waiting out the lease.
    expect(deliveringAfterMs).toBeLessThan(HANDED_OVER_LEASE_MS);
    expect(failed).toBe(0);
    expect(cut).toBe(0);
    expect(counts).toMatchObject({ ...exactlyOnce(counts.created), dead_letters: 0 });
  }, 600_000);
});
