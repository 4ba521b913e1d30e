import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { round } from './numbers.js';
import type { ResidentMemory } from './results.js';

/** dist/ of the project: the bench runs the same compiled services `npm start` runs. */
export const DIST = fileURLToPath(new URL('../', import.meta.url));

/**
 * The script that runs `service` in the build at `dist`, relative to DIST: its bundle, as
 * `npm start` runs it, or its modules in a build from before bundles existed or with `--profile`.
 */
export function serviceScript(service: string, dist = DIST): string {
  const bundle = path.join(dist, 'bundles', `${service}.mjs`);
  // A CPU profile is summarised by package, which only module files tell apart.
  const useBundle = existsSync(bundle) && !process.env.BENCH_PROFILE_DIR;
  // The launcher's modules are one file (dist/start-all.js); each service's, a folder.
  const modules = service === 'start-all' ? `${service}.js` : path.join(service, 'main.js');
  return path.relative(DIST, useBundle ? bundle : path.join(dist, modules));
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The name of every service process the bench started, by pid (for its CPU profile). */
export const serviceNames = new Map<number, string>();

/** Every child and temporary folder still alive, so Ctrl-C stops and removes them too. */
const running = new Set<ChildProcess>();
const folders = new Set<string>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of running) child.kill('SIGTERM');
    for (const dir of folders) rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
}

export interface Service {
  name: string;
  url: string;
  child: ChildProcess;
  /** SIGTERM, then resolves once the process has exited. */
  stop(): Promise<void>;
  /** The last 4,000 characters it wrote (warnings and errors: the bench logs at `warn`). */
  output(): string;
}

/** Stops `child` too when the bench is interrupted. */
export function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Polls `<url>/ready` every `everyMs` until it answers 200 (true), or until `deadline` (ms since
 * the epoch) passes or `running()` turns false (false).
 */
export async function untilReady(
  url: string,
  deadline: number,
  everyMs: number,
  running: () => boolean = () => true,
): Promise<boolean> {
  while (running()) {
    try {
      const answer = await fetch(`${url}/ready`);
      await answer.arrayBuffer();
      if (answer.ok) return true;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
  return false;
}

/** Sends `signal` to `child` and resolves once it has exited. */
function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const done = exited(child);
  child.kill(signal);
  return done;
}

/**
 * Starts `dist/<script>` and waits for its `/ready` (the "listening on" line is an info log, and the
 * bench runs with LOG_LEVEL=warn so logging costs nothing). Warnings and errors are kept and shown
 * if the service dies.
 */
export async function startService(
  name: string,
  script: string,
  portVariable: string,
  env: Record<string, string>,
  /** The port it listens on (`portVariable`). Default: a free one. */
  port?: number,
): Promise<Service> {
  port ??= await freePort();
  // `npm run bench -- --profile`: each service writes a V8 CPU profile when it exits.
  const profileDir = process.env.BENCH_PROFILE_DIR;
  const nodeArgs = [
    ...(process.env.BENCH_SERVICE_NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
    ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
  ];
  // The broker is for the runs that ask for it (amqp mode): a CRM that inherited AMQP_URL would
  // also relay every backlog customer to RabbitMQ, and skew every other scenario.
  const inherited = { ...process.env };
  delete inherited.AMQP_URL;
  delete inherited.AMQP_NAME_PREFIX;
  const child = spawn(process.execPath, [...nodeArgs, path.join(DIST, script)], {
    env: {
      ...inherited,
      NODE_OPTIONS: process.env.BENCH_SERVICE_NODE_OPTIONS ?? '',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      [portVariable]: String(port),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  if (child.pid !== undefined) serviceNames.set(child.pid, name);
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  const ready = await untilReady(url, Date.now() + 30_000, 50, () => child.exitCode === null);
  if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}:\n${output}`);
  if (!ready) {
    // A process that did not become ready is stopped: its data is about to be removed.
    await stopChild(child, 'SIGKILL');
    throw new Error(`${name} not ready within 30 s:\n${output}`);
  }
  return { name, url, child, stop: () => stopChild(child), output: () => output };
}

/** The bench's seed-style poller (bench/baseline.ts), with an IPC channel to ask it for one poll. */
export async function startBaseline(env: Record<string, string>): Promise<Service> {
  const child = fork(path.join(DIST, 'bench/baseline.js'), [], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  track(child);
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`baseline exited with ${code}`)));
  });
  // Its output goes to the bench's own (stdio inherited).
  return { name: 'baseline', url: '', child, stop: () => stopChild(child), output: () => '' };
}

/** One line of /proc/<pid>/status in MB (e.g. `VmRSS`), on Linux; null elsewhere. */
function statusMb(pid: number | undefined, field: string): number | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
    return match ? Math.round((Number(match[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

/** Resident set size of a process in MB. */
export function rssMb(pid: number | undefined): number | null {
  return statusMb(pid, 'VmRSS');
}

/**
 * The file-backed part of a process's resident set in MB: mostly the node binary's pages, which
 * every Node process maps and the kernel keeps once however many processes share them.
 */
export function rssFileMb(pid: number | undefined): number | null {
  return statusMb(pid, 'RssFile');
}

/** What the processes of `services` hold in memory now, each process counted once. */
export function residentMemory(services: Record<string, Service>): ResidentMemory {
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
          total - fileValues.reduce((a, b) => a! + b!, 0)! + Math.max(...(fileValues as number[])),
          1,
        )
      : null;
  return { rss_mb: rss, rss_mb_total: total, rss_file_mb: rssFile, resident_together_mb: together };
}

/** A fresh temporary DATA_DIR, removed by `cleanup()`. */
export function tempDataDir(label: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `mip-bench-${label}-`));
  folders.add(dir);
  return {
    dir,
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
      folders.delete(dir);
    },
  };
}
