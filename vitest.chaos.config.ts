import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * `npm run chaos`: the reliability battery at full size (CHAOS_SCALE=full), once on SQLite and once
 * on PostgreSQL (CHAOS_POSTGRES_URL, default the local server; set it empty to skip), one scenario
 * at a time so the figures are not skewed by another scenario's load. The reporter prints one line
 * per scenario and writes them to docs/figures/battery.md with the commit and date; `npm test`
 * runs the battery's reduced sizes without this reporter, so it never writes that page.
 */
const postgresUrl = process.env.CHAOS_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const databases: { name: string; url: string }[] = [{ name: 'sqlite', url: '' }];
if (postgresUrl) databases.push({ name: 'postgres', url: postgresUrl });

export default defineConfig({
  test: {
    reporters: [
      'default',
      [
        './test/chaos/reporter.ts',
        { figuresFile: fileURLToPath(new URL('docs/figures/battery.md', import.meta.url)) },
      ],
    ],
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 1_800_000,
    hookTimeout: 120_000,
    projects: databases.map(({ name, url }) => ({
      test: {
        name,
        // The battery only: test/chaos/reporter.test.ts is a unit test that `npm test` runs.
        include: [
          'test/chaos/battery.test.ts',
          'test/chaos/incidents.test.ts',
          'test/chaos/convergence.test.ts',
        ],
        pool: 'forks',
        env: {
          CHAOS_SCALE: 'full',
          CRM_DATABASE_URL: url,
          INVENTORY_DATABASE_URL: url,
          INTEGRATION_DATABASE_URL: url,
        },
      },
    })),
  },
});
