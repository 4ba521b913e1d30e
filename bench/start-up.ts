/**
 * start_up: `npm start` on a built tree, from the command until all three services answer
 * `/ready`, each time on a fresh DATA_DIR (so the migrations of a new database are included).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median, round } from './numbers.js';
import { progress, say } from './output.js';
import { exited, freePort, tempDataDir, track, untilReady } from './services.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVICES = [
  ['crm', 'CRM_PORT'],
  ['inventory', 'INVENTORY_PORT'],
  ['integration', 'INTEGRATION_PORT'],
] as const;

export interface StartUpFigures {
  /** Median of `runs`, ms from spawning `npm start` until the last `/ready` answered 200. */
  median_ms: number;
  runs_ms: number[];
}

/** When `url` first answered /ready, polled every 5 ms (fine enough for a 1 s target). */
async function readyAt(url: string, deadline: number): Promise<number> {
  if (!(await untilReady(url, deadline, 5))) throw new Error(`${url} was not ready within 60 s`);
  return performance.now();
}

async function startOnce(): Promise<number> {
  const ports = await Promise.all(SERVICES.map(() => freePort()));
  const data = tempDataDir('start-up');
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  for (const variable of [
    'CRM_DATABASE_URL',
    'INVENTORY_DATABASE_URL',
    'INTEGRATION_DATABASE_URL',
    'AMQP_URL',
  ])
    delete env[variable];
  SERVICES.forEach(([, variable], i) => (env[variable] = String(ports[i])));
  Object.assign(env, {
    DATA_DIR: data.dir,
    LOG_LEVEL: 'warn',
    CRM_URL: `http://127.0.0.1:${ports[0]}`,
    INVENTORY_URL: `http://127.0.0.1:${ports[1]}`,
  });
  const started = performance.now();
  // Its own process group: npm, the launcher and the three services stop together.
  const child = spawn('npm', ['start', '--silent'], {
    cwd: ROOT,
    env,
    stdio: 'ignore',
    detached: true,
  });
  track(child);
  try {
    const deadline = Date.now() + 60_000;
    const times = await Promise.all(
      ports.map((port) => readyAt(`http://127.0.0.1:${port}`, deadline)),
    );
    return Math.max(...times) - started;
  } finally {
    // Whether or not it is still running (npm may have failed early).
    const stopped = exited(child);
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
    } catch {
      // Nothing of the group is left to stop.
    }
    await stopped;
    data.cleanup();
  }
}

/** `runs` starts, one after another. */
export async function startUp(runs: number): Promise<StartUpFigures> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    progress(`start_up: ${i + 1}/${runs}`);
    times.push(round(await startOnce(), 0));
  }
  const figures = { median_ms: median(times), runs_ms: times };
  say(
    `start_up  npm start → all three /ready: median ${figures.median_ms} ms (${times.join(', ')} ms)`,
  );
  return figures;
}
