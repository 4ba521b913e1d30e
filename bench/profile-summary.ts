/**
 * Reads the V8 CPU profiles that `npm run bench -- --profile` makes the services write
 * (`--cpu-prof`) and prints where each one spent its time: self time by package and by function.
 * The same files open as flame graphs in Chrome DevTools (Performance panel) or speedscope.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  samples: number[];
  timeDeltas: number[];
}

/** `lodash` for node_modules/lodash/…, `src:integration/store.js` for our code, else the URL. */
function packageOf(url: string): string {
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (inModules) return inModules[1]!;
  const ours = /\/dist\/(.+)$/.exec(url);
  if (ours) return `src:${ours[1]}`;
  return url.replace(/^file:\/\//, '') || '(native)';
}

function top(totals: Map<string, number>, all: number, count: number): string[] {
  return [...totals]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, time]) => `${((100 * time) / all).toFixed(1).padStart(6)}%  ${name}`);
}

/** Self time per package and per function of one profile, as printable lines. */
export function summariseProfile(profile: CpuProfile, count = 12): string[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let all = 0;
  profile.samples.forEach((id, index) => {
    const time = profile.timeDeltas[index] ?? 0;
    const frame = byId.get(id)?.callFrame;
    if (!frame) return;
    all += time;
    const where = packageOf(frame.url);
    const name = `${frame.functionName || '(anonymous)'} ${where}:${frame.lineNumber + 1}`;
    byPackage.set(where, (byPackage.get(where) ?? 0) + time);
    byFunction.set(name, (byFunction.get(name) ?? 0) + time);
  });
  return [
    `  ${(all / 1e6).toFixed(1)} s sampled; by package:`,
    ...top(byPackage, all, count),
    `  by function:`,
    ...top(byFunction, all, count),
  ];
}

/** Prints a summary of every `.cpuprofile` in `dir`, named after the service that wrote it. */
export function printProfileSummaries(dir: string, serviceOfPid: Map<number, string>): void {
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.cpuprofile'))) {
    // V8 names them CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile.
    const pid = Number(file.split('.')[3]);
    const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
    process.stdout.write(
      `\n${serviceOfPid.get(pid) ?? 'process'} ${pid} (${file}):\n${summariseProfile(profile).join('\n')}\n`,
    );
  }
}
