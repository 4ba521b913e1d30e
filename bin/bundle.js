#!/usr/bin/env node
// Bundles each service's compiled entry (dist/<service>/main.js) into one file,
// dist/bundles/<service>.mjs, which `npm run start:<service>` runs: Node then reads and compiles one
// file instead of some hundreds of modules, which halves a service's start-up. `npm start`'s entry
// (dist/start-all.js, the three services in one process) is bundled the same way. Run by
// `npm run build` after the compiler, and by bin/start.js when it rebuilds.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const SERVICES = ['crm', 'inventory', 'integration'];

await build({
  entryPoints: {
    ...Object.fromEntries(SERVICES.map((name) => [name, path.join(root, 'dist', name, 'main.js')])),
    'start-all': path.join(root, 'dist', 'start-all.js'),
  },
  outdir: path.join(root, 'dist', 'bundles'),
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Native addons, and packages that find their own files next to their code at run time
  // (Swagger UI's pages, pino's worker threads): loaded from node_modules as usual.
  external: [
    'better-sqlite3',
    'pg-native',
    'pino',
    '@fastify/static',
    '@fastify/swagger',
    '@fastify/swagger-ui',
  ],
  // Bundled CommonJS packages call require() for Node's own modules.
  banner: {
    js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
  },
  // Less to read and parse at start-up; names are kept, so stack traces still read.
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
});
