/**
 * create_throughput: `POST /customers` as fast as the CRM answers, one at a time and with 16 in
 * flight, on a CRM of its own (fresh database, no rate limit): creates per second, latency
 * percentiles and the CRM's CPU per create.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import { cpuMs } from './cpu.js';
import { percentile, round } from './numbers.js';
import { SIZES } from './options.js';
import { progress, say } from './output.js';
import { createBenchDatabases } from './databases.js';
import { serviceScript, startService } from './services.js';

/** Requests open at once in the concurrent part (what the target is set at). */
export const IN_FLIGHT = 16;

export interface CreateFigures {
  in_flight: number;
  creates: number;
  per_s: number;
  p50_ms: number;
  p99_ms: number;
  /** User + system CPU of the CRM process per create, with IN_FLIGHT in flight. */
  crm_cpu_ms_per_create: number | null;
  one_at_a_time: { creates: number; per_s: number; p50_ms: number; p99_ms: number };
}

/** Sends creates to one CRM, each with an email no other run uses. */
export function customerCreator(crmUrl: string, connections = IN_FLIGHT) {
  const agent = new Agent({ connections, keepAliveTimeout: 30_000 });
  const run = randomBytes(4).toString('hex');
  let sent = 0;
  const createOne = async (): Promise<void> => {
    const n = ++sent;
    const answer = await request(`${crmUrl}/customers`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: `Bench ${n}`, email: `bench-${run}-${n}@example.com` }),
    });
    const body = await answer.body.text();
    if (answer.statusCode !== 201)
      throw new Error(`POST /customers answered ${answer.statusCode}: ${body}`);
  };
  return {
    /** `total` creates with `inFlight` open at a time: per second, and each one's latency (sorted). */
    async createMany(total: number, inFlight: number) {
      const latencies: number[] = [];
      let next = 0;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < total) {
            next += 1;
            const sentAt = performance.now();
            await createOne();
            latencies.push(performance.now() - sentAt);
          }
        }),
      );
      latencies.sort((a, b) => a - b);
      return { perSecond: total / ((performance.now() - started) / 1000), latencies };
    },
    close: () => agent.close(),
  };
}

export async function createThroughput(): Promise<CreateFigures> {
  const databases = await createBenchDatabases('creates');
  const crm = await startService('crm', serviceScript('crm'), 'CRM_PORT', {
    ...databases.env,
    RATE_LIMIT_MAX: '0',
  });
  const creator = customerCreator(crm.url);
  try {
    progress('create_throughput: warm-up');
    await creator.createMany(SIZES.create_warmup, IN_FLIGHT);
    progress('create_throughput: one at a time');
    const sequential = await creator.createMany(SIZES.create_sequential, 1);
    progress(`create_throughput: ${IN_FLIGHT} in flight`);
    const cpuBefore = cpuMs(crm.child.pid);
    const concurrent = await creator.createMany(SIZES.create_concurrent, IN_FLIGHT);
    const cpuAfter = cpuMs(crm.child.pid);
    const ms = (values: number[], p: number) => round(percentile(values, p), 2);
    const figures: CreateFigures = {
      in_flight: IN_FLIGHT,
      creates: SIZES.create_concurrent,
      per_s: round(concurrent.perSecond, 0),
      p50_ms: ms(concurrent.latencies, 0.5),
      p99_ms: ms(concurrent.latencies, 0.99),
      crm_cpu_ms_per_create:
        cpuBefore === null || cpuAfter === null
          ? null
          : round((cpuAfter - cpuBefore) / SIZES.create_concurrent, 3),
      one_at_a_time: {
        creates: SIZES.create_sequential,
        per_s: round(sequential.perSecond, 0),
        p50_ms: ms(sequential.latencies, 0.5),
        p99_ms: ms(sequential.latencies, 0.99),
      },
    };
    say(
      `create_throughput POST /customers: ${figures.per_s}/s with ${IN_FLIGHT} in flight ` +
        `(p50 ${figures.p50_ms} ms, p99 ${figures.p99_ms} ms, CRM CPU ${figures.crm_cpu_ms_per_create} ms/create); ` +
        `one at a time ${figures.one_at_a_time.per_s}/s (p50 ${figures.one_at_a_time.p50_ms} ms)`,
    );
    return figures;
  } finally {
    await creator.close();
    await crm.stop();
    await databases.drop();
  }
}
