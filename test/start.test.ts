import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { exitOf, freePort } from './support/processes.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

// A scratch copy of the project (sources, launcher, configs; node_modules linked), so the builds
// this test makes never touch the dist/ the other tests run.
const project = fs.mkdtempSync(path.join(os.tmpdir(), 'mip-start-'));
for (const item of ['src', 'bin', 'tsconfig.json', 'tsconfig.build.json', 'package.json']) {
  fs.cpSync(path.join(ROOT, item), path.join(project, item), { recursive: true });
}
fs.copyFileSync(path.join(ROOT, 'package-lock.json'), path.join(project, 'package-lock.json'));
fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(project, 'node_modules'));
afterAll(() => fs.rmSync(project, { recursive: true, force: true }));

const buildInfo = path.join(project, 'dist', '.tsbuildinfo');
const builtAt = () => fs.statSync(buildInfo).mtimeMs;
const bundle = path.join(project, 'dist', 'bundles', 'crm.mjs');
const bundledAt = () => fs.statSync(bundle).mtimeMs;

/** `node bin/start.js crm` in the scratch project, until its /ready answers; then SIGTERM. */
async function startCrm(): Promise<{ output: string; exitCode: number | null }> {
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(project, 'data-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATA_DIR: dataDir,
    CRM_PORT: String(port),
    LOG_FORMAT: 'json',
  };
  delete env.CRM_DATABASE_URL;
  const child = spawn(process.execPath, [path.join(project, 'bin', 'start.js'), 'crm'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + 120_000;
  for (;;) {
    const ready = await fetch(`http://127.0.0.1:${port}/ready`).then(
      (answer) => answer.ok,
      () => false,
    );
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the CRM did not become ready:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGTERM');
  return { output, exitCode: await exitOf(child) };
}

it('compiles and bundles on the first start, starts a current build without either, and builds again after a source changes', async () => {
  expect(fs.existsSync(buildInfo)).toBe(false);
  const first = await startCrm();
  expect(first.exitCode).toBe(0);
  expect(fs.existsSync(path.join(project, 'dist', 'crm', 'main.js'))).toBe(true);
  const firstBuild = builtAt();
  const firstBundle = bundledAt();

  // Nothing changed: neither the compiler nor the bundler runs, so their files are left as they were.
  const second = await startCrm();
  expect(second.exitCode).toBe(0);
  expect(builtAt()).toBe(firstBuild);
  expect(bundledAt()).toBe(firstBundle);

  // A source changed since: compiled again, and the change is what runs.
  const source = path.join(project, 'src', 'crm', 'main.ts');
  fs.appendFileSync(source, "\nconsole.log('started from the changed source');\n");
  const third = await startCrm();
  expect(third.exitCode).toBe(0);
  expect(builtAt()).toBeGreaterThan(firstBuild);
  expect(bundledAt()).toBeGreaterThan(firstBundle);
  // The launcher runs the bundle, and the bundle holds the change.
  expect(fs.readFileSync(bundle, 'utf8')).toContain('started from the changed source');
  expect(third.output).toContain('started from the changed source');
}, 240_000);

it('refuses a service name it does not know, saying which it knows', () => {
  const run = spawnSync(process.execPath, [path.join(project, 'bin', 'start.js'), 'billing'], {
    encoding: 'utf8',
  });
  expect(run.status).toBe(2);
  expect(run.stderr).toContain(
    'no service called "billing"; name one of crm, inventory, integration',
  );
});
