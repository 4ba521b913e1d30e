import { afterEach, beforeEach, expect, it } from 'vitest';
import type { IntegrationTables } from '../../../src/integration/migrations.js';
import { integrationService } from '../../../src/integration/service.js';
import { createTestApp, type TestApp } from '../../support/apps.js';
import { mip } from '../../support/mip.js';

let t: TestApp<IntegrationTables>;
let url: string;
beforeEach(async () => {
  t = await createTestApp(integrationService, {
    env: { SYNC_MODE: 'poll', CRM_URL: 'http://127.0.0.1:9', INVENTORY_URL: 'http://127.0.0.1:9' },
  });
  url = await t.app.listen({ port: 0, host: '127.0.0.1' });
});
afterEach(() => t.close());

it('adds an alert endpoint, showing its secret once, and lists it without the secret', async () => {
  expect((await mip(url, ['alerts', 'list'])).stdout).toContain('No alert endpoint');
  const added = await mip(url, ['alerts', 'add', 'http://127.0.0.1:4000/alerts']);
  expect(added.code).toBe(0);
  const secret = /whsec_\S+/.exec(added.stdout)?.[0];
  expect(secret).toBeDefined();
  const listed = await mip(url, ['alerts', 'list']);
  expect(listed).toMatchObject({ code: 0, stderr: '' });
  expect(listed.stdout).toContain('http://127.0.0.1:4000/alerts  (api, since');
  expect(listed.stdout).not.toContain(secret);
  const json = await mip(url, ['alerts', 'list', '--json']);
  expect(JSON.parse(json.stdout)).toHaveLength(1);
});

it('says why a URL is refused and exits 1', async () => {
  const refused = await mip(url, ['alerts', 'add', 'ftp://example.com/']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain('http or https');
});
