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
    ['webhook', ['webhook'], ['webhook']],
    ['amqp', ['amqp'], ['amqp']],
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

  it('lists a source that keeps the service from being ready with its reason', async () => {
    const { status } = await statusIn('webhook');
    expect(status.sources[0]).toMatchObject({
      name: 'webhook',
      ready: false,
      problem: "not yet subscribed to the CRM's webhooks",
    });
    // In hybrid mode the reconciliation finds what webhooks miss: not subscribed is not a problem.
    await integration!.close();
    const hybrid = await statusIn('hybrid');
    expect(hybrid.status.sources.map((source) => source.ready)).toEqual([true, true]);
    expect(hybrid.status.poll).toEqual(hybrid.status.sources[1]!.details);
  });
});
