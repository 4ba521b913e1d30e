/**
 * The reliability battery's convergence scenario (issue 16), in every sync mode: customers change
 * and leave while Inventory fails, the integration process is killed, the warehouse ships and (in
 * the push modes) webhooks arrive late, out of order and twice. At the end Inventory must match
 * the CRM, counted in the databases, and no deleted customer's name or email may be stored
 * anywhere: counted in the files on SQLite, in the tables on PostgreSQL.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../support/fault-proxy.js';
import { ChaosPlatform, SYNC_MODES, scaled, sleep } from '../support/chaos.js';
import { DRAIN_BOUND_MS, SEED, describeFailures, drainFigure, report } from '../support/battery.js';
import { CustomerLives, PersonalData } from '../support/customer-lives.js';
import {
  countConvergence,
  describeCustomers,
  hasPackage,
  runWarehouse,
  shippedCustomers,
  waitUntilConverged,
} from '../support/convergence.js';
import type { ServiceName } from '../support/databases.js';
import {
  countTokensInFiles,
  countTokensInRows,
  leftovers,
  waitUntilScrubbed,
  type TokenCounts,
} from '../support/erasure.js';
import { WebhookRelay } from '../support/webhook-relay.js';

let platform: ChaosPlatform | undefined;
let relay: WebhookRelay | undefined;
afterEach(async () => {
  await relay?.stop();
  relay = undefined;
  await platform?.stop();
  platform = undefined;
});

describe.each(SYNC_MODES)('convergence in %s mode', (mode) => {
  const count = scaled(200, 10_000);
  const rate = scaled(40, 100);
  const pushed = mode === 'webhook' || mode === 'hybrid';
  it(`${count} customers at ${rate}/s changed 1 to 5 times, a fifth deleted (half of their emails taken by new customers), packages shipped meanwhile, 30% faults, the integration process SIGKILLed every 2 ± 1 s${pushed ? ', pushes delayed up to 2 s and duplicated' : ''} → Inventory matches the CRM, no deleted customer pending nor stored, no dead letters`, async () => {
    const startedAt = performance.now();
    const killTimes = seededRandom(SEED);
    relay = pushed ? new WebhookRelay(seededRandom(SEED + 1)) : undefined;
    const relayUrl = await relay?.start();
    platform = await ChaosPlatform.start({
      mode,
      seed: SEED,
      // Pushes held up to 2 s by the relay: a longer timeout, and more calls side by side, so
      // the CRM keeps up with the changes instead of leaving them all to the feed repair.
      crmEnv: { WEBHOOK_TIMEOUT_MS: '5000', WEBHOOK_CONCURRENCY: '256' },
      integrationEnv: relayUrl ? { WEBHOOK_URL: relayUrl } : {},
    });
    const p = platform;
    const [instance] = p.instances;
    if (relay) relay.target = `${instance!.url}/webhooks/crm`;
    p.proxy.plan = {
      rate: 0.3,
      kinds: ['status_503', 'status_429', 'reset', 'commit_then_drop', 'delay'],
      retryAfterSeconds: 0,
      delayMs: 1_500,
    };
    const livesRandom = seededRandom(SEED + 2);
    const lives = new CustomerLives(p.crm.url, new PersonalData(livesRandom), livesRandom, (id) =>
      hasPackage(p, id),
    );
    let living = true;
    const loadStartedAt = performance.now();
    const load = lives.run(count, rate).finally(() => (living = false));
    const warehouse = runWarehouse(p, seededRandom(SEED + 3), Math.ceil(count / 10), () => living);
    let kills = 0;
    while (living || kills < 2) {
      await sleep(1_000 + Math.floor(killTimes() * 2_000));
      await instance!.restart('SIGKILL');
      kills += 1;
    }
    const outcome = await load;
    const loadS = (performance.now() - loadStartedAt) / 1000;
    await warehouse;
    p.proxy.plan = { rate: 0, kinds: [] };
    const drainMs = await waitUntilConverged(p, DRAIN_BOUND_MS);
    const counts = await countConvergence(p);
    const shipped = await shippedCustomers(p);
    const unconverged = await describeCustomers(p, counts.examples);

    const { pattern } = lives.personal;
    // SQLite: every service scrubs its file after erasures (SQLITE_SCRUB_AFTER_MS, shortened here).
    await waitUntilScrubbed(p);
    await p.stopGracefully();
    await relay?.stop();
    const inRows = await countTokensInRows(p, pattern);
    const inFiles = await countTokensInFiles(p, pattern);
    // Each deleted customer's names and emails, but a reused email (rightly kept for its new
    // customer), and in Inventory not a shipped package's recipient (its shipping record).
    const leftIn = (stored: TokenCounts) => {
      const of = (service: ServiceName, tokens = stored[service]) =>
        leftovers(tokens, outcome.erased, {
          excludedTokens: outcome.reused,
          ...(service === 'inventory' ? { excludedCustomers: shipped } : {}),
        });
      return {
        crm: of('crm'),
        inventory: of('inventory'),
        integration: of('integration'),
      };
    };
    const leftInRows = leftIn(inRows);
    const leftInFiles = inFiles && leftIn(inFiles);
    const figure = (left: typeof leftInRows) =>
      Object.entries(left)
        .map(([service, { occurrences }]) => `${service}:${occurrences}`)
        .join(',');

    const customers = counts.live + counts.deleted;
    report(
      'convergence',
      mode,
      {
        created: customers,
        delivered: counts.converged,
        duplicates: counts.duplicates,
        missing: customers - counts.converged,
        strays: counts.strays,
        dead_letters: counts.dead_letters,
      },
      startedAt,
      {
        live: counts.live,
        changes: outcome.changes,
        deletions: counts.deleted,
        deleted_at_once: outcome.deletedEarly,
        reused_emails: outcome.reusedEmails,
        shipped: counts.shipped,
        cancelled: counts.cancelled,
        kills,
        ...(relay ? { pushes: relay.counts.received, pushed_twice: relay.counts.duplicated } : {}),
        drain_ms: drainFigure(drainMs),
        load_s: loadS.toFixed(1),
        stale: counts.stale,
        pending_after_delete: counts.pending_after_delete,
        unsettled: counts.unsettled,
        left_in_rows: figure(leftInRows),
        ...(leftInFiles ? { left_in_files: figure(leftInFiles) } : {}),
        client_retried: describeFailures(outcome.failures),
      },
    );
    expect(outcome.gaveUp, describeFailures(outcome.failures)).toBe(0);
    expect(customers).toBe(outcome.created);
    expect(counts.deleted).toBe(outcome.deletions);
    expect(counts, unconverged).toMatchObject({
      missing: 0,
      stale: 0,
      shipped_ahead: 0,
      pending_after_delete: 0,
      duplicates: 0,
      strays: 0,
      dead_letters: 0,
      unsettled: 0,
    });
    expect(counts.converged).toBe(customers);
    expect(drainMs).not.toBeNull();
    expect(kills).toBeGreaterThanOrEqual(2);
    // Deletions reached packages, not only customers whose package did not exist yet.
    expect(counts.cancelled).toBeGreaterThan(0);
    if (relay) expect(relay.counts.duplicated).toBeGreaterThan(0);
    // The search finds what is stored: every live customer's name and email, at least.
    expect(inRows.crm.size).toBeGreaterThanOrEqual(2 * counts.live);
    const none = { occurrences: 0, customers: [] };
    expect(leftInRows).toEqual({ crm: none, inventory: none, integration: none });
    if (leftInFiles) {
      expect(leftInFiles).toEqual({ crm: none, inventory: none, integration: none });
    }
  }, 600_000);
});
