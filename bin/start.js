#!/usr/bin/env node
// Launcher for `npm start` and `npm run start:<service>`: compiles the TypeScript and bundles the
// entries (bin/bundle.js) only when a source file changed since the last build (that takes
// seconds; a current build starts at once), then runs the three services in this one process, or
// the one named: `node bin/start.js [crm|inventory|integration]`.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const SERVICES = ['crm', 'inventory', 'integration'];
const service = process.argv[2];
if (service !== undefined && !SERVICES.includes(service)) {
  process.stderr.write(
    `start: no service called "${service}"; name one of ${SERVICES.join(', ')}, or none for all.\n`,
  );
  process.exit(2);
}

/** The newest modification time under `dir`, in ms (0 when it does not exist). */
function newestIn(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const at = fs.statSync(path.join(entry.parentPath, entry.name)).mtimeMs;
    if (at > newest) newest = at;
  }
  return newest;
}

// The compiler writes its build info last, after every output file.
const buildInfo = path.join(root, 'dist', '.tsbuildinfo');
const builtAt = fs.existsSync(buildInfo) ? fs.statSync(buildInfo).mtimeMs : 0;
const sourcesAt = Math.max(
  newestIn(path.join(root, 'src')),
  ...['tsconfig.json', 'tsconfig.build.json', 'package-lock.json'].map(
    (file) => fs.statSync(path.join(root, file)).mtimeMs,
  ),
);
if (sourcesAt > builtAt) {
  const build = spawnSync(
    process.execPath,
    [
      path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      path.join(root, 'tsconfig.build.json'),
    ],
    { stdio: 'inherit' },
  );
  if (build.status !== 0) process.exit(build.status ?? 1);
  // An incremental build that found nothing to emit leaves the build info as it was.
  const now = new Date();
  fs.utimesSync(buildInfo, now, now);
}
// Bundled after each build (`npm run build` does both; a build by `tsc` alone leaves them stale).
const bundles = [...SERVICES, 'start-all'].map((name) =>
  path.join(root, 'dist', 'bundles', `${name}.mjs`),
);
const bundledAt = Math.min(
  ...bundles.map((file) => (fs.existsSync(file) ? fs.statSync(file).mtimeMs : 0)),
);
if (bundledAt < fs.statSync(buildInfo).mtimeMs) {
  const bundle = spawnSync(process.execPath, [path.join(root, 'bin', 'bundle.js')], {
    stdio: 'inherit',
  });
  if (bundle.status !== 0) process.exit(bundle.status ?? 1);
}

const entry = path.join(root, 'dist', 'bundles', `${service ?? 'start-all'}.mjs`);
await import(pathToFileURL(entry).href);
