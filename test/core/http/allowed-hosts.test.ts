import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, readAllowedHosts } from '../../../src/core/config.js';
import { crmService } from '../../../src/crm/service.js';
import { inventoryService } from '../../../src/inventory/service.js';
import { integrationService } from '../../../src/integration/service.js';
import { createTestApp, expectProblem, type TestApp } from '../../support/apps.js';

const services = [
  { definition: crmService, read: '/customers', table: 'customers' },
  { definition: inventoryService, read: '/package-requests', table: 'package_requests' },
  { definition: integrationService, read: '/api/status', table: 'deliveries' },
] as const;
const TOKEN = 'admin-token-0123456789abcdef';

let t: TestApp<unknown> | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const start = async (
  definition: (typeof services)[number]['definition'],
  options: { apiToken?: string; env?: Record<string, string> } = {},
) => {
  t = (await createTestApp(definition as never, options)) as TestApp<unknown>;
  return t.app;
};

const get = (url: string, host: string, headers: Record<string, string> = {}) =>
  t!.app.inject({ method: 'GET', url, headers: { host, ...headers } });

describe.each(services)('$definition.title on loopback without a token', ({ definition, read }) => {
  it('serves localhost, 127.0.0.1 and [::1] on any port, and refuses any other name with 421', async () => {
    await start(definition);
    for (const host of ['localhost', 'localhost:8000', '127.0.0.1:9', '[::1]:8002', 'LOCALHOST']) {
      expect((await get(read, host)).statusCode, host).toBe(200);
    }
    for (const host of [
      'attacker.test',
      'attacker.test:8000',
      'localhost.attacker.test',
      '10.0.0.5',
      '[::2]',
    ]) {
      const refused = expectProblem(await get(read, host), 421);
      expect(refused.code, host).toBe('host_not_allowed');
      expect(String(refused.detail)).toContain('ALLOWED_HOSTS');
      expect(String(refused.detail)).toContain('API_TOKEN');
    }
    // Orchestrators probe pods by address: the probes answer whatever the name.
    expect((await get('/health', 'attacker.test')).statusCode).toBe(200);
  });

  it('serves the names in ALLOWED_HOSTS, and subdomains of a name given with a leading dot', async () => {
    await start(definition, { env: { ALLOWED_HOSTS: 'mip.example.com, .internal.example' } });
    for (const host of [
      'mip.example.com',
      'MIP.example.com:443',
      'a.internal.example',
      'internal.example',
      'localhost',
    ]) {
      expect((await get(read, host)).statusCode, host).toBe(200);
    }
    for (const host of ['example.com', 'mip.example.com.attacker.test', 'xinternal.example']) {
      expectProblem(await get(read, host), 421);
    }
  });
});

it('refuses a foreign name before the request does anything: a create stores nothing', async () => {
  await start(crmService);
  const refused = await t!.app.inject({
    method: 'POST',
    url: '/customers',
    headers: { host: 'attacker.test', 'content-type': 'application/json' },
    payload: { name: 'Ada Lovelace', email: 'ada@example.com' },
  });
  expectProblem(refused, 421);
  const rows = await (t!.database.db as any).selectFrom('customers').selectAll().execute();
  expect(rows).toEqual([]);
});

it('over a real socket too: the Host header a rebound DNS name sends is refused', async () => {
  await start(integrationService, { env: { SYNC_MODE: 'poll' } });
  await t!.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (t!.app.server.address() as AddressInfo).port;
  const status = (host: string) =>
    new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/api/dead-letters', headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject);
    });
  expect(await status(`attacker.test:${port}`)).toBe(421);
  expect(await status(`127.0.0.1:${port}`)).toBe(200);
});

describe('with API_TOKEN', () => {
  it('serves any name when ALLOWED_HOSTS is unset: the token is the guard', async () => {
    await start(inventoryService, { apiToken: TOKEN });
    const answer = await get('/package-requests', 'inventory:8001', {
      authorization: `Bearer ${TOKEN}`,
    });
    expect(answer.statusCode).toBe(200);
  });

  it('keeps to ALLOWED_HOSTS when it is set', async () => {
    await start(inventoryService, { apiToken: TOKEN, env: { ALLOWED_HOSTS: 'inventory' } });
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await get('/package-requests', 'inventory:8001', auth)).statusCode).toBe(200);
    const refused = expectProblem(await get('/package-requests', 'other:8001', auth), 421);
    expect(String(refused.detail)).not.toContain('set API_TOKEN');
  });
});

it('reads ALLOWED_HOSTS as comma-separated names and refuses what is not a host name', () => {
  expect(readAllowedHosts({})).toEqual([]);
  expect(
    readAllowedHosts({ ALLOWED_HOSTS: 'Mip.Example.com, .corp.example,[::1],10.0.0.5' }),
  ).toEqual(['mip.example.com', '.corp.example', '[::1]', '10.0.0.5']);
  for (const wrong of [
    '*',
    'http://mip.example.com',
    'mip.example.com:8000',
    'a/b',
    'mip..example',
  ]) {
    expect(() => readAllowedHosts({ ALLOWED_HOSTS: wrong }), wrong).toThrow(ConfigError);
  }
  expect(() => readAllowedHosts({ ALLOWED_HOSTS: '*' })).toThrow(/ALLOWED_HOSTS=mip\.example\.com/);
});
