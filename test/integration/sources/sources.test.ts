import { afterEach, describe, expect, it } from 'vitest';
import type { Status } from '../../../src/contracts/admin-api.js';
import type { IntegrationTables } from '../../../src/integration/migrations.js';
import { integrationService } from '../../../src/integration/service.js';
import { createTestApp, type TestApp } from '../../support/apps.js';

let integration: TestApp<IntegrationTables> | undefined;
afterEach(async () => {
  await integration?.close();
  integration = undefined;
});

/** The service in `mode`, built but not started (nothing is called). */
async function statusIn(mode: string): Promise<{ status: Status; metrics: string }> {
  integration = await createTestApp(integrationService, {
    env: {
      SYNC_MODE: mode,
      CRM_URL: 'http://127.0.0.1:9',
      INVENTORY_URL: 'http://127.0.0.1:9',
      AMQP_URL: 'amqp://127.0.0.1:9',
    },
  });
  const status = (await integration.app.inject({ method: 'GET', url: '/api/status' })).json();
  const metrics = (await integration.app.inject({ method: 'GET', url: '/metrics' })).body;
  return { status: status as Status, metrics };
}

describe('the sources of each SYNC_MODE', () => {
  const FIELDS = ['poll', 'webhook', 'amqp'] as const;
  it.each([
    ['poll', ['poll'], ['poll']],
    ['webhook', ['webhook', 'reconcile'], ['webhook', 'poll']],
    ['amqp', ['amqp', 'reconcile'], ['amqp', 'poll']],
    ['hybrid', ['webhook', 'reconcile'], ['webhook', 'poll']],
  ] as const)(
    '%s mode runs %j, listed in /api/status and as metric labels',
    async (mode, names, fields) => {
      const { status, metrics } = await statusIn(mode);
      expect(status.sources.map((source) => source.name)).toEqual(names);
      // Each source's details are also where /api/status showed them before `sources` existed.
      for (const field of FIELDS) {
        const index = (fields as readonly string[]).indexOf(field);
        expect(status[field]).toEqual(index === -1 ? null : status.sources[index]!.details);
      }
      for (const name of names) {
        expect(metrics).toMatch(
          new RegExp(
            `integration_customers_seen_total\\{source="${name}",service="integration"\\} 0`,
          ),
        );
      }
    },
  );

  it.each(['webhook', 'hybrid', 'amqp'])(
    'in %s mode is ready before push runs: the feed repair brings what push would',
    async (mode) => {
      const { status } = await statusIn(mode);
      expect(status.sources.map((source) => source.ready)).toEqual([true, true]);
      expect(status.poll).toEqual(status.sources[1]!.details);
    },
  );
});
