import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fc from 'fast-check';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceDefinition } from '../../src/core/service.js';
import { crmService } from '../../src/crm/service.js';
import { inventoryService } from '../../src/inventory/service.js';
import { integrationService } from '../../src/integration/service.js';
import { createTestApp, type TestApp } from '../support/apps.js';
import { rowCounts } from '../support/databases.js';
import { sweepBodies, sweepBodySizes, sweepContentTypes } from '../support/route-sweep/bodies.js';
import { sweepDocumentedHeaders } from '../support/route-sweep/headers.js';
import { nastyText } from '../support/route-sweep/nasty-text.js';
import { sweepDashboardFiles, sweepPathParameters } from '../support/route-sweep/paths.js';
import { sweepQueries } from '../support/route-sweep/queries.js';
import {
  bodyAjv,
  DASHBOARD_DIR,
  documentedRoutes,
  MUTATING_METHODS,
  undocumentedGetPaths,
  type Route,
  type Target,
} from '../support/route-sweep/routes.js';

// Property-based sweep of bad input over every route of the three services. The routes are read
// from each app (its /openapi.json, and its router for the dashboard's static files), so a route
// added later is swept without touching this file. For every answer: no 5xx, every error is
// problem+json without a stack trace, bad input never gets a 2xx from a POST or DELETE, and after
// the sweep every table holds as many rows as before and /ready still answers 200.

/** Rate limiting (being added) must not turn a fast in-process sweep into 429s: 0 disables it. */
const NO_RATE_LIMIT = { RATE_LIMIT_MAX: '0' };

// A failing property reports the assertion that failed, not only the counterexample.
fc.configureGlobal({ includeErrorInReport: true });

/** Where the integration service would call the CRM and Inventory: a closed port, never reached. */
const NOWHERE = { CRM_URL: 'http://127.0.0.1:9', INVENTORY_URL: 'http://127.0.0.1:9' };

// ---------------------------------------------------------------------------------------------
// The sweep: its properties, one module per part of a request, are in test/support/route-sweep/.

interface ServiceUnderTest {
  title: string;
  definition: ServiceDefinition<any>;
  /** Environments to build the service in; a route is swept on the first one that has it. */
  variants: Array<{ label: string; env: Record<string, string> }>;
  minimumRoutes: number;
  servesDashboard: boolean;
}

const SERVICES: ServiceUnderTest[] = [
  {
    title: 'CRM',
    definition: crmService,
    variants: [{ label: 'crm', env: {} }],
    minimumRoutes: 10,
    servesDashboard: false,
  },
  {
    title: 'Inventory',
    definition: inventoryService,
    variants: [{ label: 'inventory', env: {} }],
    minimumRoutes: 6,
    servesDashboard: false,
  },
  {
    title: 'Integration',
    definition: integrationService,
    // Poll mode has no webhook receiver; hybrid mode adds it (nothing is started in either).
    variants: [
      { label: 'integration (poll)', env: { SYNC_MODE: 'poll', ...NOWHERE } },
      { label: 'integration (hybrid)', env: { SYNC_MODE: 'hybrid', ...NOWHERE } },
    ],
    minimumRoutes: 8,
    servesDashboard: true,
  },
];

const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort();
const prototypesAtStart = prototypeKeys();

for (const service of SERVICES)
  describe(`${service.title}: bad input on every route`, () => {
    const targets: Target[] = [];
    const routes: Route[] = [];
    let staticPaths: string[] = [];
    const bodyRoutes = () => routes.filter((r) => MUTATING_METHODS.has(r.method));

    beforeAll(async () => {
      for (const variant of service.variants) {
        const test = (await createTestApp(service.definition, {
          env: { ...variant.env, ...NO_RATE_LIMIT },
        })) as TestApp<unknown>;
        const target = { label: variant.label, test, tablesBefore: new Map() };
        target.tablesBefore = await rowCounts(test);
        targets.push(target);
        const seen = new Set(routes.map((r) => `${r.method} ${r.path}`));
        const documented = await documentedRoutes(target);
        routes.push(...documented.filter((r) => !seen.has(`${r.method} ${r.path}`)));
        if (targets.length === 1) staticPaths = undocumentedGetPaths(target, documented);
      }
    });

    afterAll(async () => {
      for (const target of targets) await target.test.close();
    });

    it('finds its routes in its own OpenAPI document and router', () => {
      expect(routes.length).toBeGreaterThanOrEqual(service.minimumRoutes);
      expect(bodyRoutes().length).toBeGreaterThanOrEqual(2);
      expect(routes.some((r) => r.queryParams.length > 0)).toBe(true);
      if (service.servesDashboard) {
        // The router's static routes and the files on disk must agree, or undocumentedGetPaths rotted.
        const files = fs.readdirSync(DASHBOARD_DIR).map((name) => `/${name}`);
        expect(files.length).toBeGreaterThanOrEqual(3);
        expect(staticPaths.filter((p) => p !== '/').sort()).toEqual(files.sort());
        expect(routes.some((r) => r.headerParams.some((p) => p.name === 'webhook-signature'))).toBe(
          true,
        );
      } else {
        expect(staticPaths).toEqual([]);
      }
    });

    it('answers arbitrary, wrongly typed, nasty, huge and unknown-field bodies with a 4xx', () =>
      sweepBodies(routes));

    it('answers a valid body sent as another content type, or none, with 415', () =>
      sweepContentTypes(bodyRoutes()));

    it('answers a valid body padded past the route’s size limit with 413', () =>
      sweepBodySizes(bodyRoutes()));

    it('answers malformed documented headers (Idempotency-Key, forged webhook-*) with a 4xx', (context) =>
      sweepDocumentedHeaders(routes, context));

    it('answers absurd limit, after, wait, customer_id… query values with 400', () =>
      sweepQueries(routes));

    it('answers path parameter tricks (.., %2e%2e, %00, long ids, non-UUIDs) with a 4xx', () =>
      sweepPathParameters(routes));

    it.runIf(service.servesDashboard)(
      'serves only the dashboard’s own files, whatever path tricks are tried',
      () => sweepDashboardFiles(targets[0]!, staticPaths),
    );

    it('stored nothing, polluted no prototype, and is still ready', async () => {
      expect(prototypeKeys()).toEqual(prototypesAtStart);
      expect(({} as Record<string, unknown>).x).toBeUndefined();
      for (const target of targets) {
        expect(target.tablesBefore.size, target.label).toBeGreaterThanOrEqual(2);
        expect(await rowCounts(target.test), target.label).toEqual(target.tablesBefore);
        const ready = await target.test.app.inject({ method: 'GET', url: '/ready' });
        expect(ready.statusCode, target.label).toBe(200);
      }
    });
  });

// ---------------------------------------------------------------------------------------------
// Valid input that merely looks dangerous is data: stored and read back byte for byte.

describe('valid but nasty text is stored verbatim', () => {
  it('keeps a customer name with SQL, templates, markup, RTL, zero-width, emoji, combining marks', async () => {
    const crm = (await createTestApp(crmService, { env: NO_RATE_LIMIT })) as TestApp<unknown>;
    try {
      const [route] = (
        await documentedRoutes({ label: 'crm', test: crm, tablesBefore: new Map() })
      ).filter((r) => r.method === 'POST' && r.path === '/customers');
      const nameSchema = route!.bodySchema!.properties!.name!;
      const validName = bodyAjv.compile(nameSchema);
      let serial = 0;
      await fc.assert(
        fc.asyncProperty(nastyText, async (name) => {
          fc.pre(validName(name));
          serial += 1;
          // Quotes and dashes are allowed in an email's local part too.
          const email = `o'neil+'--${serial}@example.com`;
          const created = await crm.app.inject({
            method: 'POST',
            url: '/customers',
            headers: { 'content-type': 'application/json' },
            payload: JSON.stringify({ name, email }),
          });
          expect(created.statusCode, JSON.stringify(name)).toBe(201);
          const { id } = created.json() as { id: string };
          const read = await crm.app.inject({ method: 'GET', url: `/customers/${id}` });
          expect(read.json()).toMatchObject({ id, name, email });
          const row = await (crm.database.db as Kysely<any>)
            .selectFrom('customers')
            .select(['name', 'email'])
            .where('id', '=', id)
            .executeTakeFirstOrThrow();
          expect(row).toEqual({ name, email });
        }),
        {
          numRuns: 40,
          examples: [
            ["'; DROP TABLE customers; --"],
            ['${process.exit(1)}'],
            ['{{7*7}}'],
            ['<script>alert(1)</script>'],
            ['../../etc/passwd'],
            ['\u202Eevil.exe'],
            ['Ze\u0301\u0351\u0352 \u200B\u200D 👩‍👩‍👧‍👦'],
          ],
        },
      );
    } finally {
      await crm.close();
    }
  });

  it('keeps an Idempotency-Key that looks like an injection and replays its answer', async () => {
    const inventory = (await createTestApp(inventoryService, {
      env: NO_RATE_LIMIT,
    })) as TestApp<unknown>;
    try {
      const keys = [
        "';DROP_TABLE_package_requests;--",
        '${7*7}',
        '{{7*7}}',
        '<script>alert(1)</script>',
        '../../etc/passwd',
        '%00',
        '__proto__',
      ];
      for (const key of keys) {
        const send = (customerId: string) =>
          inventory.app.inject({
            method: 'POST',
            url: '/package-requests',
            headers: { 'content-type': 'application/json', 'idempotency-key': key },
            payload: JSON.stringify({ customer_id: customerId }),
          });
        const customerId = randomUUID();
        const first = await send(customerId);
        expect(first.statusCode, key).toBe(201);
        const again = await send(customerId);
        expect(again.statusCode, key).toBe(201);
        expect(again.headers['idempotent-replayed'], key).toBe('true');
        expect(again.json()).toEqual(first.json());
        const stored = await (inventory.database.db as Kysely<any>)
          .selectFrom('idempotency_keys')
          .select('key')
          .where('key', '=', key)
          .execute();
        expect(stored, key).toEqual([{ key }]);
      }
    } finally {
      await inventory.close();
    }
  });
});
