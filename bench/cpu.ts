/**
 * CPU per customer: the user + system CPU time of each service process over a scenario's window,
 * divided by the customers delivered in it. Read by the bench from /proc, for the whole process
 * (every thread: V8's compiler and GC, libuv's pool running SQLite), so the services need not
 * report anything.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { round } from './numbers.js';
import type { CpuPerCustomer } from './results.js';
import type { Service } from './services.js';

/** Clock ticks per second of the CPU times in /proc (USER_HZ: 100 unless `getconf` says otherwise). */
const CLOCK_TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
  } catch {
    return 100;
  }
})();

/**
 * User + system CPU milliseconds a process has used since it started, every thread included (V8's
 * compiler and GC threads, libuv's pool), from /proc/<pid>/stat on Linux (10 ms steps); null
 * elsewhere or once the process is gone.
 */
export function cpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: state is the
    // 3rd field of the line, utime the 14th, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return null;
  }
}

/** CPU ms each service process has used so far, by name. */
export type CpuReading = Record<string, number | null>;

export function readCpu(services: Record<string, Service>): CpuReading {
  return Object.fromEntries(
    Object.entries(services).map(([name, service]) => [name, cpuMs(service.child.pid)]),
  );
}

/** The CPU each service used between two readings, per customer delivered in between. */
export function cpuPerCustomer(
  before: CpuReading,
  after: CpuReading,
  customers: number,
): CpuPerCustomer | null {
  if (customers <= 0) return null;
  const used = Object.keys(before).map((name): [string, number | null] => {
    const [start, end] = [before[name], after[name]];
    return [name, start == null || end == null ? null : end - start];
  });
  const total = used.every(([, ms]) => ms !== null)
    ? used.reduce((sum, [, ms]) => sum + ms!, 0)
    : null;
  const perCustomer = (ms: number | null) => (ms === null ? null : round(ms / customers, 3));
  return {
    ...Object.fromEntries(used.map(([name, ms]) => [name, perCustomer(ms)])),
    total: perCustomer(total),
  };
}

/** `ms/customer (crm x, inventory y, …)` for the progress lines. */
export function describeCpu(cpu: CpuPerCustomer | null): string {
  if (!cpu) return 'n/a';
  const services = Object.entries(cpu).filter(([name]) => name !== 'total');
  return `${cpu.total ?? 'n/a'} ms/customer (${services.map(([name, ms]) => `${name} ${ms ?? 'n/a'}`).join(', ')})`;
}
