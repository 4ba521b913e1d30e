/**
 * Creates per second against the CRM (SQLite, or PostgreSQL with --postgres), one at a time and with 16 in flight, for one
 * or more builds side by side (rounds alternate between them, so a busy machine weighs on each
 * alike). Each build gets a fresh schema and its own CRM process; the figure per build and load
 * is the median of the rounds.
 *
 *   npm run build && tsc -p bench/tsconfig.json
 *   node dist/bench/create-throughput.js [--postgres] [label=path/to/dist ...]
 *
 * With no build named it measures this build (`dist/`). PostgreSQL comes from BENCH_POSTGRES_URL
 * (default postgres://postgres@127.0.0.1:5432/test); ROUNDS (default 3), SEQUENTIAL (creates one at
 * a time per round, default 500) and CONCURRENT (creates with 16 in flight per round, default 4000).
 */
import path from 'node:path';
import { Agent, request } from 'undici';
import { cpuMs } from './cpu.js';
import { customerCreator, IN_FLIGHT } from './creates.js';
import { createBenchDatabases, type BenchDatabases } from './databases.js';
import { median } from './numbers.js';
import { postgres } from './options.js';
import { DIST, serviceScript, startService, type Service } from './services.js';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SEQUENTIAL = Number(process.env.SEQUENTIAL ?? 500);
const CONCURRENT = Number(process.env.CONCURRENT ?? 4000);

interface Build {
  label: string;
  dist: string;
  databases?: BenchDatabases;
  crm?: Service;
  creator?: ReturnType<typeof customerCreator>;
  sequential: number[];
  concurrent: number[];
  /** CPU time (user + system) of the CRM process per create, in ms, with 16 in flight. */
  cpuMs: number[];
  created: number;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const agent = new Agent({ connections: 1, keepAliveTimeout: 30_000 });

/** Creates `total` customers with `inFlight` requests open at a time; answers creates per second. */
async function createMany(build: Build, total: number, inFlight: number): Promise<number> {
  const { perSecond } = await build.creator!.createMany(total, inFlight);
  build.created += total;
  return perSecond;
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

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
  const builds: Build[] = (args.length > 0 ? args : [`this=${DIST}`]).map((arg, i) => {
    const [label, dist] = arg.includes('=') ? arg.split('=', 2) : [`build${i + 1}`, arg];
    return {
      label: label!,
      dist: path.resolve(dist!),
      sequential: [],
      concurrent: [],
      cpuMs: [],
      created: 0,
    };
  });
  try {
    for (const build of builds) {
      build.databases = await createBenchDatabases(`creates-${build.label}`);
      build.crm = await startService(
        `crm (${build.label})`,
        serviceScript('crm', build.dist),
        'CRM_PORT',
        { ...build.databases.env, RATE_LIMIT_MAX: '0' },
      );
      build.creator = customerCreator(build.crm.url);
      await createMany(build, 200, IN_FLIGHT); // warm-up: JIT, pooled connections
    }
    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const build of builds) {
        build.sequential.push(await createMany(build, SEQUENTIAL, 1));
        const cpuBefore = cpuMs(build.crm!.child.pid)!;
        build.concurrent.push(await createMany(build, CONCURRENT, IN_FLIGHT));
        build.cpuMs.push((cpuMs(build.crm!.child.pid)! - cpuBefore) / CONCURRENT);
        say(
          `round ${round} ${build.label}: ${build.sequential.at(-1)!.toFixed(0)}/s one at a time, ${build.concurrent.at(-1)!.toFixed(0)}/s with ${IN_FLIGHT} in flight (CRM CPU ${build.cpuMs.at(-1)!.toFixed(2)} ms per create)`,
        );
      }
    }
    say(`\ncreates/s on ${postgres ? 'PostgreSQL' : 'SQLite'}, median of ${ROUNDS} rounds`);
    say(`build        one at a time   ${IN_FLIGHT} in flight   CRM CPU ms/create   feed complete`);
    for (const build of builds) {
      const feed = await readWholeFeed(build);
      say(
        `${build.label.padEnd(12)} ${median(build.sequential).toFixed(0).padStart(13)} ${median(build.concurrent).toFixed(0).padStart(14)} ${median(build.cpuMs).toFixed(2).padStart(19)}   ${feed.events === build.created ? `yes, in ${feed.ms.toFixed(0)} ms` : `NO: ${feed.events} of ${build.created}`}`,
      );
    }
  } finally {
    await Promise.all(builds.map((build) => build.creator?.close()));
    await Promise.all(builds.map((build) => build.crm?.stop()));
    for (const build of builds) await build.databases?.drop();
    await agent.close();
  }
}

await main();
