// Starts every service in the foreground with service-prefixed, interleaved logs, like
// `docker compose up`; Ctrl-C (SIGINT) or SIGTERM stops them all gracefully. Each runs from its
// bundle (bin/bundle.js, half the start-up), or from its modules when it was not bundled.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import concurrently from 'concurrently';

const SERVICES = ['crm', 'inventory', 'integration'] as const;

// concurrently runs commands through a shell; quote paths only if they need it.
const quote = (value: string) =>
  /^[\w./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
const node = quote(process.execPath);
const logFormat = process.env.LOG_FORMAT ?? (process.stdout.isTTY ? 'pretty' : 'json');
// dist/, whether this runs as dist/start-all.js or bundled, as dist/bundles/start-all.mjs.
const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.basename(here) === 'bundles' ? path.dirname(here) : here;
const entryOf = (name: string) => {
  const bundle = path.join(dist, 'bundles', `${name}.mjs`);
  return existsSync(bundle) ? bundle : path.join(dist, name, 'main.js');
};

const { result } = concurrently(
  SERVICES.map((name) => ({
    name,
    command: `exec ${node} ${quote(entryOf(name))}`,
    env: { LOG_FORMAT: logFormat },
  })),
  {
    prefix: 'name',
    prefixColors: ['cyan', 'magenta', 'yellow'],
    // One service failing to start leaves the platform broken: stop the rest and say so.
    killOthersOn: ['failure'],
  },
);

result.then(
  () => process.exit(0),
  (events: { command: { name: string }; exitCode: number | string }[]) => {
    const failed = events.filter((event) => event.exitCode !== 0);
    for (const event of failed) {
      console.error(`${event.command.name} exited with ${event.exitCode}`);
    }
    process.exit(1);
  },
);
