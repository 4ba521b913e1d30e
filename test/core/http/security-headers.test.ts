import { afterEach, describe, expect, it } from 'vitest';
import { crmService } from '../../../src/crm/service.js';
import { inventoryService } from '../../../src/inventory/service.js';
import { integrationService } from '../../../src/integration/service.js';
import { createTestApp, type TestApp } from '../../support/apps.js';

const TOKEN = 'admin-token-0123456789abcdef';
const services = [
  { definition: crmService, read: '/customers' },
  { definition: inventoryService, read: '/package-requests' },
  { definition: integrationService, read: '/api/status' },
] as const;

let t: TestApp<unknown> | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

function expectSecurityHeaders(headers: Record<string, unknown>, what: string) {
  const csp = String(headers['content-security-policy']);
  const directives = new Map(
    csp.split(';').map((part) => {
      const [name, ...values] = part.trim().split(/\s+/);
      return [name, values.join(' ')] as const;
    }),
  );
  expect(directives.get('frame-ancestors'), what).toBe("'none'");
  expect(directives.get('script-src'), what).toBe("'self'");
  expect(directives.get('script-src-attr'), what).toBe("'none'");
  expect(directives.get('object-src'), what).toBe("'none'");
  expect(csp, what).not.toContain('unsafe-inline');
  // A service on plain HTTP must not send its pages' requests to HTTPS.
  expect(csp, what).not.toContain('upgrade-insecure-requests');
  expect(headers['x-frame-options'], what).toBe('DENY');
  expect(headers['x-content-type-options'], what).toBe('nosniff');
  expect(headers['referrer-policy'], what).toBe('no-referrer');
  expect(headers['cross-origin-resource-policy'], what).toBe('same-origin');
  expect(headers['strict-transport-security'], what).toBeUndefined();
}

describe.each(services)('$definition.title', ({ definition, read }) => {
  it('sends the security headers on every kind of answer', async () => {
    t = (await createTestApp(definition as never, {
      env: { SYNC_MODE: 'poll', RATE_LIMIT_MAX: '30', RATE_LIMIT_WINDOW_MS: '60000' },
    })) as TestApp<unknown>;
    const inject = (method: string, url: string, headers: Record<string, string> = {}) =>
      t!.app.inject({ method: method as 'GET', url, headers });
    const answers = {
      ok: await inject('GET', read),
      probe: await inject('GET', '/health'),
      metrics: await inject('GET', '/metrics'),
      'API docs': await inject('GET', '/docs/'),
      'OpenAPI document': await inject('GET', '/openapi.json'),
      'not found': await inject('GET', '/nope'),
      'bad query': await inject('GET', `${read}?limit=-1`),
      'malformed URL': await inject('GET', '/%E0%A4%A'),
      'foreign host': await inject('GET', read, { host: 'attacker.test' }),
      'cross-site write': await inject('POST', read, { 'sec-fetch-site': 'cross-site' }),
    };
    for (const [what, answer] of Object.entries(answers)) {
      expect(answer.statusCode, what).toBeLessThan(500);
      expectSecurityHeaders(answer.headers, what);
    }
    expect(answers['foreign host'].statusCode).toBe(421);
    expect(answers['cross-site write'].statusCode).toBe(403);
    let limited;
    do limited = await inject('GET', read);
    while (limited.statusCode !== 429);
    expectSecurityHeaders(limited.headers, 'rate limited');
  });

  it('sends them on a 401 too', async () => {
    t = (await createTestApp(definition as never, {
      apiToken: TOKEN,
      env: { SYNC_MODE: 'poll' },
    })) as TestApp<unknown>;
    const refused = await t.app.inject({ method: 'GET', url: read });
    expect(refused.statusCode).toBe(401);
    expectSecurityHeaders(refused.headers, '401');
  });
});

it('sends them with the dashboard and its files', async () => {
  t = (await createTestApp(integrationService as never, {
    env: { SYNC_MODE: 'poll' },
  })) as TestApp<unknown>;
  for (const url of ['/', '/dashboard.js', '/dashboard.css']) {
    const answer = await t.app.inject({ method: 'GET', url });
    expect(answer.statusCode, url).toBe(200);
    expectSecurityHeaders(answer.headers, url);
  }
});
