#!/usr/bin/env node
// Launcher for the `mip` admin CLI; the program itself is the compiled TypeScript in dist/.
import fs from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const cli = new URL('../dist/integration/cli.js', import.meta.url);
if (!fs.existsSync(cli)) {
  process.stderr.write(
    'mip: the project is not built yet; run npm run build (or npm start) first.\n',
  );
  process.exit(1);
}
const { runCli } = await import(cli.href);
process.exitCode = await runCli(process.argv.slice(2));
