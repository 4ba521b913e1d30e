/**
 * Creates per second against the CRM on PostgreSQL, one at a time and with 16 in flight, for one
 * or more builds side by side (rounds alternate between them, so a busy machine weighs on each
 * alike). Each build gets a fresh schema and its own CRM process; the figure per build and load
 * is the median of the rounds.
 *
 *   npm run build && tsc -p bench/tsconfig.json
 *   node dist/bench/create-throughput.js [label=path/to/dist ...]
 *
 * With no argument it measures this build (`dist/`). PostgreSQL comes from BENCH_POSTGRES_URL
 * (default postgres://postgres@127.0.0.1:5432/test); ROUNDS (default 3), SEQUENTIAL (creates one at
 * a time per round, default 500) and CONCURRENT (creates with 16 in flight per round, default 4000).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { Agent, request } from 'undici';
import { DIST, startService, type Service } from './services.js';

const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SEQUENTIAL = Number(process.env.SEQUENTIAL ?? 500);
const CONCURRENT = Number(process.env.CONCURRENT ?? 4000);
const IN_FLIGHT = 16;

interface Build {
  label: string;
  dist: string;
  schema: string;
  crm?: Service;
  sequential: number[];
  concurrent: number[];
  /** CPU time (user + system) of the CRM process per create, in ms, with 16 in flight. */
  cpuMs: number[];
  created: number;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const agent = new Agent({ connections: IN_FLIGHT, keepAliveTimeout: 30_000 });
const runId = randomBytes(4).toString('hex');
let emails = 0;

async function create(crm: Service): Promise<void> {
  const n = ++emails;
  const answer = await request(`${crm.url}/customers`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: `Bench ${n}`, email: `bench-${runId}-${n}@example.com` }),
  });
  const body = await answer.body.text();
  if (answer.statusCode !== 201)
    throw new Error(`POST /customers answered ${answer.statusCode}: ${body}`);
}

/** Creates `total` customers with `inFlight` requests open at a time; answers creates per second. */
async function createMany(build: Build, total: number, inFlight: number): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) {
        next += 1;
        await create(build.crm!);
      }
    }),
  );
  build.created += total;
  return total / ((performance.now() - started) / 1000);
}

/**
 * Reads the feed from the start as a consumer does, until it has every created customer or 10 s
 * have passed; answers what it saw and after how long. A skipped event would never come.
 */
async function readWholeFeed(build: Build): Promise<{ events: number; ms: number }> {
  const started = performance.now();
  let after = 0;
  let events = 0;
  while (events < build.created && performance.now() - started < 10_000) {
    const answer = await request(`${build.crm!.url}/events?after=${after}&limit=1000&wait=1000`, {
      dispatcher: agent,
    });
    const page = (await answer.body.json()) as { position: number }[];
    events += page.length;
    if (page.length > 0) after = page[page.length - 1]!.position;
  }
  return { events, ms: performance.now() - started };
}

/** User + system CPU time the process has used so far, in ms (Linux). */
function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of the file, in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function withClient<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const builds: Build[] = (args.length > 0 ? args : [`this=${DIST}`]).map((arg, i) => {
    const [label, dist] = arg.includes('=') ? arg.split('=', 2) : [`build${i + 1}`, arg];
    return {
      label: label!,
      dist: path.resolve(dist!),
      schema: `bench_creates_${runId}_${i}`,
      sequential: [],
      concurrent: [],
      cpuMs: [],
      created: 0,
    };
  });
  try {
    for (const build of builds) {
      await withClient((client) => client.query(`create schema "${build.schema}"`));
      const url = new URL(POSTGRES_URL);
      url.searchParams.set('options', `-c search_path=${build.schema}`);
      build.crm = await startService(
        `crm (${build.label})`,
        path.relative(DIST, path.join(build.dist, 'crm/main.js')),
        'CRM_PORT',
        { CRM_DATABASE_URL: url.toString(), RATE_LIMIT_MAX: '0' },
      );
      await createMany(build, 200, IN_FLIGHT); // warm-up: JIT, pooled connections
    }
    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const build of builds) {
        build.sequential.push(await createMany(build, SEQUENTIAL, 1));
        const cpuBefore = cpuMsOf(build.crm!.child.pid!);
        build.concurrent.push(await createMany(build, CONCURRENT, IN_FLIGHT));
        build.cpuMs.push((cpuMsOf(build.crm!.child.pid!) - cpuBefore) / CONCURRENT);
        say(
          `round ${round} ${build.label}: ${build.sequential.at(-1)!.toFixed(0)}/s one at a time, ${build.concurrent.at(-1)!.toFixed(0)}/s with ${IN_FLIGHT} in flight (CRM CPU ${build.cpuMs.at(-1)!.toFixed(2)} ms per create)`,
        );
      }
    }
    say(`\ncreates/s on PostgreSQL, median of ${ROUNDS} rounds`);
    say(`build        one at a time   ${IN_FLIGHT} in flight   CRM CPU ms/create   feed complete`);
    for (const build of builds) {
      const feed = await readWholeFeed(build);
      if (feed.events !== build.created) {
        const stored = await withClient(
          async (client) =>
            (
              await client.query(
                `select count(*) as events, max(position) as last from "${build.schema}".events`,
              )
            ).rows[0] as { events: string; last: string },
        );
        say(
          `${build.label}: the table holds ${stored.events} events, up to position ${stored.last}`,
        );
      }
      say(
        `${build.label.padEnd(12)} ${median(build.sequential).toFixed(0).padStart(13)} ${median(build.concurrent).toFixed(0).padStart(14)} ${median(build.cpuMs).toFixed(2).padStart(19)}   ${feed.events === build.created ? `yes, in ${feed.ms.toFixed(0)} ms` : `NO: ${feed.events} of ${build.created}`}`,
      );
    }
  } finally {
    await Promise.all(builds.map((build) => build.crm?.stop()));
    await withClient(async (client) => {
      for (const build of builds)
        await client.query(`drop schema if exists "${build.schema}" cascade`);
    });
    await agent.close();
  }
}

await main();
