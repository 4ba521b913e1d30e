/**
 * The seed's design, rebuilt faithfully as the benchmark's baseline: every interval it reads the whole
 * customer list (all pages, 1,000 at a time), keeps the ids it has handled in an in-memory Set, and
 * creates one package request at a time, sequentially, without an Idempotency-Key.
 *
 * Runs as its own process (forked by bench/run.ts) so its memory is measured like a service's.
 * Environment: CRM_URL, INVENTORY_URL, BASELINE_INTERVAL_MS (default 10000, the seed's).
 * IPC: sends {type:'ready'} at start; answers {type:'poll'} with {type:'polled', ms, created}, and
 * {type:'skip-rest'} with {type:'skipped', skipped} once every customer not yet handled is marked
 * handled without posting (the bench measures a large backlog over a window).
 */

interface Customer {
  id: string;
}

const crmUrl = process.env.CRM_URL ?? 'http://127.0.0.1:8000';
const inventoryUrl = process.env.INVENTORY_URL ?? 'http://127.0.0.1:8001';
const intervalMs = Number(process.env.BASELINE_INTERVAL_MS ?? 10_000);

const processed = new Set<string>();
/** Set by {type:'skip-rest'}: the running poll marks the rest handled instead of posting. */
let skipping = false;
let skipped = 0;

/** The `rel="next"` target of a Link header, as an absolute URL. */
function nextPage(link: string | null): string | undefined {
  const match = link ? /<([^>]+)>;\s*rel="next"/.exec(link) : null;
  return match?.[1] ? new URL(match[1], crmUrl).toString() : undefined;
}

async function listAllCustomers(): Promise<Customer[]> {
  const customers: Customer[] = [];
  let url: string | undefined = `${crmUrl}/customers?limit=1000`;
  while (url) {
    const answer = await fetch(url);
    if (!answer.ok) throw new Error(`GET /customers answered ${answer.status}`);
    customers.push(...((await answer.json()) as Customer[]));
    url = nextPage(answer.headers.get('link'));
  }
  return customers;
}

/** One poll: list everything, create a package request for each id not seen before. */
async function pollOnce(): Promise<number> {
  let created = 0;
  for (const customer of await listAllCustomers()) {
    if (processed.has(customer.id)) continue;
    if (skipping) {
      processed.add(customer.id);
      skipped++;
      continue;
    }
    const answer = await fetch(`${inventoryUrl}/package-requests`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customer_id: customer.id }),
    });
    await answer.arrayBuffer();
    // Like the seed: a success marks the customer handled; a failure is retried next poll.
    if (answer.ok) {
      processed.add(customer.id);
      created++;
    }
  }
  return created;
}

// Polls never overlap: the loop and the bench's requests share one chain.
let chain: Promise<unknown> = Promise.resolve();
function serialised<T>(task: () => Promise<T>): Promise<T> {
  const result = chain.then(task);
  chain = result.catch(() => undefined);
  return result;
}

async function loop(): Promise<void> {
  for (;;) {
    try {
      await serialised(pollOnce);
    } catch (error) {
      process.stderr.write(`baseline: poll failed: ${String(error)}\n`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

process.on('message', (message: { type?: string }) => {
  if (message.type === 'skip-rest') {
    // The running poll, if any, stops posting at once; then one listing marks every customer
    // not yet handled, wherever the last poll stopped (or failed).
    skipping = true;
    void serialised(async () => {
      for (const customer of await listAllCustomers()) {
        if (processed.has(customer.id)) continue;
        processed.add(customer.id);
        skipped++;
      }
      skipping = false;
      process.send?.({ type: 'skipped', skipped });
    });
    return;
  }
  if (message.type !== 'poll') return;
  void serialised(async () => {
    const started = performance.now();
    const created = await pollOnce();
    process.send?.({ type: 'polled', ms: performance.now() - started, created });
  });
});
process.on('SIGTERM', () => process.exit(0));
process.send?.({ type: 'ready' });
void loop();
