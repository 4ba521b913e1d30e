import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import fc from 'fast-check';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BODY_LIMIT_BYTES } from '../../src/core/http.js';
import type { ServiceDefinition } from '../../src/core/service.js';
import { crmService } from '../../src/crm/service.js';
import { inventoryService } from '../../src/inventory/service.js';
import { integrationService } from '../../src/integration/service.js';
import { createTestApp, type TestApp } from '../support/apps.js';
import { countRows } from '../support/databases.js';

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

const DASHBOARD_DIR = fileURLToPath(new URL('../../public/dashboard/', import.meta.url));

const MUTATING_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

// ---------------------------------------------------------------------------------------------
// What the apps document about themselves

interface JsonSchema {
  type?: string;
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  default?: unknown;
  examples?: unknown[];
  enum?: unknown[];
  anyOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
}

interface Parameter {
  in: 'path' | 'query' | 'header';
  name: string;
  required?: boolean;
  schema: JsonSchema;
}

interface Operation {
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { description?: string }>;
}

/** One service app under test; a service may need several (one per sync mode). */
interface Target {
  label: string;
  test: TestApp<unknown>;
  tablesBefore: Map<string, number>;
}

interface Route {
  target: Target;
  method: string;
  /** OpenAPI path template, e.g. `/customers/{id}`. */
  path: string;
  pathParams: Parameter[];
  queryParams: Parameter[];
  headerParams: Parameter[];
  bodySchema: JsonSchema | undefined;
  /** Largest body the route accepts, from its documented 413 answer. */
  bodyLimit: number;
  validateBody: ValidateFunction | undefined;
  validateQuery: ValidateFunction | undefined;
  validateHeaders: ValidateFunction | undefined;
}

// The same validator settings as the services (src/core/http/validation.ts), so "invalid" here means what
// the documented schema refuses; defaults are not filled in, so what is validated is what is sent.
const makeAjv = (coerceTypes: boolean) => {
  const ajv = new Ajv({ allErrors: true, coerceTypes, strict: false, useDefaults: false });
  addFormats.default(ajv);
  return ajv;
};
const bodyAjv = makeAjv(false);
const textAjv = makeAjv(true);

function objectSchemaOf(params: Parameter[], closed: boolean): JsonSchema {
  return {
    type: 'object',
    properties: Object.fromEntries(params.map((p) => [p.name, p.schema])),
    // A parameter with a default is filled in by the service, so it is never missing.
    required: params.filter((p) => p.required && p.schema.default === undefined).map((p) => p.name),
    ...(closed ? { additionalProperties: false } : {}),
  };
}

async function documentedRoutes(target: Target): Promise<Route[]> {
  const response = await target.test.app.inject({ method: 'GET', url: '/openapi.json' });
  expect(response.statusCode).toBe(200);
  const doc = response.json() as { paths: Record<string, Record<string, Operation>> };
  return Object.entries(doc.paths).flatMap(([path, operations]) =>
    Object.entries(operations).map(([method, operation]) => {
      const parameters = operation.parameters ?? [];
      const of = (where: Parameter['in']) => parameters.filter((p) => p.in === where);
      const bodySchema = operation.requestBody?.content['application/json']?.schema;
      const limitKiB = /(\d+) KiB/.exec(operation.responses['413']?.description ?? '')?.[1];
      const queryParams = of('query');
      const headerParams = of('header');
      return {
        target,
        method: method.toUpperCase(),
        path,
        pathParams: of('path'),
        queryParams,
        headerParams,
        bodySchema,
        bodyLimit: limitKiB ? Number(limitKiB) * 1024 : BODY_LIMIT_BYTES,
        validateBody: bodySchema ? bodyAjv.compile(bodySchema) : undefined,
        // The services refuse unknown query parameters but ignore unknown headers.
        validateQuery: queryParams.length
          ? textAjv.compile(objectSchemaOf(queryParams, true))
          : undefined,
        validateHeaders: headerParams.length
          ? textAjv.compile(objectSchemaOf(headerParams, false))
          : undefined,
      };
    }),
  );
}

/**
 * GET routes the router has but /openapi.json hides: the dashboard's static files. Read from
 * Fastify's route tree, whose lines are `├── name (METHODS)` indented four columns per level.
 */
function undocumentedGetPaths(target: Target, documented: Route[]): string[] {
  const tree = target.test.app.printRoutes({ commonPrefix: false });
  const prefixes: string[] = [];
  const paths: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^((?:│ {3}| {4})*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    const path = (prefixes[depth - 1] ?? '') + match[2]!;
    prefixes[depth] = path;
    if (match[3]?.split(', ').includes('GET')) paths.push(path);
  }
  const documentedPaths = new Set(documented.map((r) => r.path.replace(/\{(\w+)\}/g, ':$1')));
  return paths.filter(
    (path) =>
      !documentedPaths.has(path) &&
      path !== '/openapi.json' &&
      !path.startsWith('/docs') &&
      !/[:*]/.test(path),
  );
}

// ---------------------------------------------------------------------------------------------
// Nasty input

const NASTY_FRAGMENTS = [
  // lone surrogates
  '\uD800',
  '\uDFFF',
  'a\uD83D',
  // right-to-left and zero-width marks
  '\u202E',
  '\u200F',
  '\u2067',
  '\u200B',
  '\u200D',
  '\uFEFF',
  '\u2060',
  // emoji and combining marks
  '😀',
  '👩‍👩‍👧‍👦',
  '🏳️‍🌈',
  '\u{1F1FA}\u{1F1F8}',
  'e\u0301',
  '\u0301',
  'Z\u0351\u0352\u0353\u0354\u0355\u0356',
  // NUL and other control characters
  '\u0000',
  '\u0007',
  '\u001B[31m',
  '\r\n',
  '\t',
  '\u007F',
  '\u0085',
  '\u2028',
  // injection
  "'; DROP TABLE customers; --",
  "' OR '1'='1",
  '1; SELECT pg_sleep(10)',
  '${process.exit(1)}',
  '${7*7}',
  '{{7*7}}',
  '#{7*7}',
  '<script>alert(1)</script>',
  '../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '%00',
  '%s%s%n',
  '__proto__',
  'constructor',
  '{"$gt":""}',
  // things that look like other types
  'null',
  'NaN',
  '-1',
  '1e309',
  ' ',
  '',
];

/** Short strings made of the fragments above and arbitrary code points (surrogates included). */
const nastyText = fc.oneof(
  fc.constantFrom(...NASTY_FRAGMENTS),
  fc
    .array(
      fc.oneof(fc.constantFrom(...NASTY_FRAGMENTS), fc.string({ unit: 'binary', maxLength: 8 })),
      { minLength: 1, maxLength: 6 },
    )
    .map((parts) => parts.join('')),
  fc.string({ unit: 'binary', maxLength: 40 }),
);

/** Strings around the 64 KiB body limit once JSON-encoded. */
const hugeText = fc.oneof(
  fc.integer({ min: 60 * 1024, max: 70 * 1024 }).map((n) => 'x'.repeat(n)),
  fc.integer({ min: 15_000, max: 18_000 }).map((n) => '😀'.repeat(n)),
  fc.integer({ min: 10_000, max: 12_000 }).map((n) => '\u0000'.repeat(n)),
);

/** Header values: HTTP cannot carry line breaks, so those are left out. */
const headerText = fc
  .oneof(nastyText, fc.constantFrom('x'.repeat(256), 'x'.repeat(16_384)))
  .map((value) => value.replace(/[\r\n]/g, ''));

const GARBAGE_HEADER_NAMES = [
  'traceparent',
  'tracestate',
  'accept',
  'accept-encoding',
  'accept-language',
  'accept-version',
  'authorization',
  'cookie',
  'forwarded',
  'if-none-match',
  'if-modified-since',
  'origin',
  'range',
  'referer',
  'user-agent',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-http-method-override',
  'x-request-id',
];

const garbageHeaders = fc.dictionary(
  fc.oneof(fc.constantFrom(...GARBAGE_HEADER_NAMES), fc.stringMatching(/^x-[a-z0-9-]{1,20}$/)),
  fc.oneof(
    headerText,
    fc.constantFrom(
      `00-${'0'.repeat(32)}-${'0'.repeat(16)}-01`,
      `ff-${'f'.repeat(32)}-${'f'.repeat(16)}-ff`,
      '00-zz-zz-zz',
      'bytes=0-99999999999999999999',
      'bytes=-1,-2,-3',
      'Bearer ',
      'Basic Og==',
      'Basic !!!',
    ),
  ),
  { maxKeys: 4 },
);

/** Any JSON type but the schema's (an integral double counts as an integer). */
function wrongTypeValue(schema: JsonSchema): fc.Arbitrary<unknown> {
  const declared = schema.type ?? schema.anyOf?.[0]?.type;
  const byType: Record<string, fc.Arbitrary<unknown>> = {
    string: fc.string({ maxLength: 10 }),
    integer: fc.integer(),
    number: fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Number.isInteger(n)),
    boolean: fc.boolean(),
    null: fc.constant(null),
    array: fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
    object: fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 1 }), {
      maxKeys: 3,
    }),
  };
  const wrong = Object.entries(byType)
    .filter(([type]) => type !== declared && !(declared === 'number' && type === 'integer'))
    .map(([, arbitrary]) => arbitrary);
  return fc.oneof(...wrong);
}

/** A value the schema accepts: only required properties, the documented example or default. */
function validValue(schema: JsonSchema): fc.Arbitrary<unknown> {
  if (schema.anyOf) return validValue(schema.anyOf[0]!);
  switch (schema.type) {
    case 'object':
      return fc.record(
        Object.fromEntries(
          Object.entries(schema.properties ?? {})
            .filter(([name]) => schema.required?.includes(name))
            .map(([name, property]) => [name, validValue(property)]),
        ),
      );
    case 'array':
      return fc.array(validValue(schema.items ?? {}), {
        minLength: Math.max(1, schema.minItems ?? 0),
        maxLength: Math.max(1, schema.minItems ?? 0),
      });
    case 'integer':
    case 'number':
      return fc.integer({ min: schema.minimum ?? 0, max: schema.maximum ?? 1000 });
    case 'boolean':
      return fc.boolean();
    default:
      if (schema.enum) return fc.constantFrom(...schema.enum);
      if (schema.format === 'uuid') return fc.uuid();
      if (schema.format === 'email') return fc.uuid().map((id) => `fuzz-${id}@example.com`);
      if (schema.examples?.length) return fc.constant(schema.examples[0]);
      if (schema.default !== undefined) return fc.constant(schema.default);
      return fc.constant('plain text');
  }
}

/**
 * An object `JSON.stringify` writes with a `__proto__` key: assigning it would set the prototype
 * instead, and a parser that did the same on the server would poison every object.
 */
function withOwnKey(object: Record<string, unknown>, key: string, value: unknown) {
  Object.defineProperty(object, key, { value, enumerable: true, configurable: true });
  return object;
}

/**
 * Bodies shaped like the schema: each property valid, missing, of a wrong type, a nasty or a huge
 * string; arrays of such items; sometimes with unknown or reserved fields added.
 */
function shapedBody(schema: JsonSchema, depth = 0): fc.Arbitrary<unknown> {
  if (schema.type === 'array' && schema.items && depth < 3) {
    return fc.array(shapedBody(schema.items, depth + 1), { maxLength: 3 });
  }
  if (schema.type !== 'object' || depth >= 3) {
    return fc.oneof(
      { weight: 3, arbitrary: validValue(schema) },
      { weight: 2, arbitrary: wrongTypeValue(schema) },
      { weight: 2, arbitrary: nastyText },
      { weight: 1, arbitrary: hugeText },
    );
  }
  const properties = Object.entries(schema.properties ?? {});
  const shaped = fc.record(
    Object.fromEntries(
      properties.map(([name, property]) => [name, shapedBody(property, depth + 1)]),
    ),
    { requiredKeys: [] },
  ) as fc.Arbitrary<Record<string, unknown>>;
  const extraKey = fc.oneof(
    fc.constantFrom('id', 'status', 'created_at', '__proto__', 'constructor', 'prototype', ''),
    nastyText,
  );
  return fc
    .tuple(shaped, fc.array(fc.tuple(extraKey, fc.jsonValue({ maxDepth: 2 })), { maxLength: 2 }))
    .map(([body, extras]) =>
      extras.reduce((object, [key, value]) => withOwnKey(object, key, value), { ...body }),
    );
}

/** Text that is not JSON at all, or JSON cut short. */
const notJson = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 50 }).filter((text) => {
    try {
      JSON.parse(text);
      return false;
    } catch {
      return true;
    }
  }),
  fc.constantFrom(
    '{',
    '{"a":',
    '[1,2',
    '{"a":1}}',
    "{'a':1}",
    'NaN',
    '\u0000',
    '{"__proto__":{"x":1}}',
  ),
);

/** Every byte but unreserved ones percent-encoded, from UTF-8 (a lone surrogate becomes U+FFFD). */
function percentEncode(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((byte) =>
      /[A-Za-z0-9_~-]/.test(String.fromCharCode(byte))
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('');
}

/** What the server reads back from `percentEncode(text)`. */
const asReceived = (text: string) => Buffer.from(text, 'utf8').toString('utf8');

/** Path segments meant to escape or confuse routing. No raw `/` or lone `.`: clients normalise those into other paths (RFC 3986 §5.2.4), which is not a trick. */
const PATH_TRICKS = [
  '..',
  '%2e%2e',
  '%2E%2E',
  '.%2e',
  '%252e%252e',
  '..%2f..%2fetc%2fpasswd',
  '..%5c..%5cpackage.json',
  '%00',
  'x%00y',
  '%',
  '%zz',
  '%E0%A4%A',
  '%C0%AE%C0%AE',
  'a'.repeat(101),
  'a'.repeat(10_000),
  '00000000-0000-0000-0000-00000000000',
  '00000000-0000-0000-0000-0000000000000',
  '000000000000000000000000000000000000',
  '{id}',
  ':id',
  '*',
  'null',
  '-1',
  '1e309',
  'NaN',
];

const pathTrick = fc.oneof(
  fc.constantFrom(...PATH_TRICKS),
  nastyText.map(percentEncode),
  fc.uuid().map((id) => `${id}%00`),
  fc.uuid().map((id) => `${id.toUpperCase()}x`),
);

/** Query values no documented parameter accepts, or that bend the query string itself. */
function absurdValueFor(schema: JsonSchema): fc.Arbitrary<string> {
  const common = fc.oneof(
    nastyText,
    fc.constantFrom('1e309', '-1e309', 'Infinity', 'NaN', '1e21', '0x10', '[]', '{}', '1,2'),
  );
  if (schema.type !== 'integer' && schema.type !== 'number') return common;
  const below = (schema.minimum ?? 0) - 1;
  return fc.oneof(
    common,
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: below }).map(String),
    fc
      .bigInt({ min: 1n, max: 2n ** 64n })
      .map((excess) => String(BigInt(schema.maximum ?? Number.MAX_SAFE_INTEGER) + excess)),
    fc.bigInt({ min: 2n ** 53n, max: 2n ** 200n }).map(String),
    fc
      .double({ noNaN: true })
      .filter((n) => !Number.isInteger(n))
      .map(String),
    fc.constantFrom('9'.repeat(400), '-0.5', '1.5', '9007199254740993', '18446744073709551616'),
  );
}

/** Raw query strings that no parameter generator makes. */
const RAW_QUERY_TRICKS = [
  'limit',
  'limit=',
  '&&&',
  '=1',
  'limit=1&limit=2',
  'after=1&after=2',
  'limit[]=1',
  'limit[a]=1',
  '__proto__[x]=1',
  'constructor[prototype][x]=1',
  '%',
  'limit=%E0%A4%A',
  'after=%00',
  `limit=${'9'.repeat(5000)}`,
];

const WRONG_CONTENT_TYPES = [
  'text/plain',
  'text/json',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/jsonx',
  'application/json-patch+json',
  'application/octet-stream',
  'application',
  '*/*',
  '',
  ';',
  'application/json\u0000',
];

/** True when the Content-Type names JSON, which is the right one, not a wrong one. */
const namesJson = (contentType: string) =>
  contentType.split(';')[0]!.trim().toLowerCase() === 'application/json';

// ---------------------------------------------------------------------------------------------
// Asserting answers

interface Answer {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  json(): unknown;
}

/** What every answer must be, whatever was sent. */
function expectSafeAnswer(response: Answer, context: string): void {
  expect(response.statusCode, context).toBeLessThan(500);
  expect(response.body, `${context}: stack trace`).not.toContain('    at ');
  if (response.statusCode >= 400) {
    expect(String(response.headers['content-type']), context).toMatch(
      /^application\/problem\+json/,
    );
    const problem = response.json() as Record<string, unknown>;
    for (const field of ['type', 'title', 'status', 'detail']) {
      expect(problem, `${context}: problem lacks ${field}`).toHaveProperty(field);
    }
    expect(problem.status, context).toBe(response.statusCode);
  }
}

function describeRequest(method: string, url: string, payload?: string | Buffer): string {
  const shown = (text: string) => (text.length > 200 ? `${text.slice(0, 200)}…` : text);
  const body = payload === undefined ? '' : ` (${payload.length} bytes) ${shown(String(payload))}`;
  return `${method} ${shown(url)}${body}`;
}

/** Runs one route's property; a failure names the route. */
async function sweepRoute(route: Route, property: () => Promise<void>): Promise<void> {
  try {
    await property();
  } catch (error) {
    const message = (error as Error).message;
    throw new Error(`${route.target.label} ${route.method} ${route.path}: ${message}`);
  }
}

function urlFor(route: Route, pathValues: Record<string, string>, query = ''): string {
  const path = route.path.replace(/\{(\w+)\}/g, (_, name: string) => pathValues[name] ?? '');
  return query ? `${path}?${query}` : path;
}

/** A path whose parameters are valid ids that name nothing. */
const validPathValues = (route: Route) =>
  fc.record(Object.fromEntries(route.pathParams.map((p) => [p.name, fc.uuid()]))) as fc.Arbitrary<
    Record<string, string>
  >;

/** True when `inject` can send this path: `//x` and `/\x` would name another host. */
function injectable(path: string): boolean {
  try {
    return new URL(path, 'http://localhost').host === 'localhost';
  } catch {
    return false;
  }
}

/** A GET sent as raw HTTP/1.0, so no client normalises the path first. */
async function rawGet(port: number, path: string): Promise<Answer> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  // Written, not ended: the server closes an HTTP/1.0 connection after its answer. (@fastify/static
  // sends nothing to a client that half-closes its side first.)
  socket.write(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  const headEnd = text.indexOf('\r\n\r\n');
  const head = text.slice(0, headEnd);
  const body = text.slice(headEnd + 4);
  return {
    statusCode: Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]),
    headers: { 'content-type': /^content-type: *(.*)$/im.exec(head)?.[1] },
    body,
    json: () => JSON.parse(body) as unknown,
  };
}

async function tablesOf(test: TestApp<unknown>): Promise<string[]> {
  const db = test.database.db as Kysely<any>;
  const { rows } =
    test.database.dialect === 'postgres'
      ? await sql<{ name: string }>`select table_name as name from information_schema.tables
          where table_schema = current_schema() and table_type = 'BASE TABLE'`.execute(db)
      : await sql<{ name: string }>`select name from sqlite_master
          where type = 'table' and name not like 'sqlite_%'`.execute(db);
  return rows.map((row) => row.name);
}

async function rowCounts(test: TestApp<unknown>): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const table of await tablesOf(test)) {
    counts.set(table, await countRows(test.database.db as Kysely<any>, table));
  }
  return counts;
}

// ---------------------------------------------------------------------------------------------
// The sweep

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
        // The router's static routes and the files on disk must agree, or the parsing above rotted.
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

    it('answers arbitrary, wrongly typed, nasty, huge and unknown-field bodies with a 4xx', async () => {
      for (const route of routes) {
        const mutating = MUTATING_METHODS.has(route.method);
        const body = route.bodySchema
          ? fc.oneof(
              fc.jsonValue().map((value) => JSON.stringify(value)),
              shapedBody(route.bodySchema).map((value) => JSON.stringify(value)),
              notJson,
            )
          : fc.oneof(
              fc.jsonValue().map((value) => JSON.stringify(value)),
              notJson,
            );
        await sweepRoute(route, () =>
          fc.assert(
            fc.asyncProperty(
              validPathValues(route),
              body,
              garbageHeaders,
              fc.option(headerText, { nil: undefined }),
              async (pathValues, payload, headers, idempotencyKey) => {
                let parsed: unknown;
                let isJson = true;
                try {
                  parsed = JSON.parse(payload);
                } catch {
                  isJson = false;
                }
                const acceptable = isJson && (route.validateBody?.(parsed) ?? true);
                // A valid body would be stored: that is the "valid but nasty" test's business.
                fc.pre(!(mutating && route.bodySchema && acceptable));
                const url = urlFor(route, pathValues);
                const response = await route.target.test.app.inject({
                  method: route.method as 'POST',
                  url,
                  headers: {
                    ...headers,
                    'content-type': 'application/json',
                    ...(idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey }),
                  },
                  payload,
                });
                const context = describeRequest(route.method, url, payload);
                expectSafeAnswer(response, context);
                if (!mutating) return;
                // A garbage Origin is another site's: the write is refused before its body is read.
                if (headers.origin !== undefined && response.statusCode === 403) {
                  expect(response.json().code, context).toBe('cross_site_request');
                  return;
                }
                if (Buffer.byteLength(payload) > route.bodyLimit) {
                  expect(response.statusCode, context).toBe(413);
                } else if (!isJson) {
                  expect(response.statusCode, context).toBe(400);
                } else if (route.bodySchema) {
                  expect(response.statusCode, context).toBe(400);
                }
              },
            ),
            { numRuns: mutating ? 60 : 8 },
          ),
        );
      }
    });

    it('answers a valid body sent as another content type, or none, with 415', async () => {
      for (const route of bodyRoutes()) {
        const body = route.bodySchema ? validValue(route.bodySchema) : fc.constant({});
        await sweepRoute(route, () =>
          fc.assert(
            fc.asyncProperty(
              validPathValues(route),
              body,
              fc.option(fc.oneof(fc.constantFrom(...WRONG_CONTENT_TYPES), fc.string()), {
                nil: undefined,
              }),
              async (pathValues, value, contentType) => {
                fc.pre(contentType === undefined || !namesJson(contentType));
                const payload = JSON.stringify(value);
                const url = urlFor(route, pathValues);
                const response = await route.target.test.app.inject({
                  method: route.method as 'POST',
                  url,
                  headers: contentType === undefined ? {} : { 'content-type': contentType },
                  payload,
                });
                const context = `${describeRequest(route.method, url, payload)} as ${JSON.stringify(contentType)}`;
                expectSafeAnswer(response, context);
                expect(response.statusCode, context).toBe(415);
              },
            ),
            { numRuns: 15 },
          ),
        );
      }
    });

    it('answers a valid body padded past the route’s size limit with 413', async () => {
      for (const route of bodyRoutes()) {
        const body = route.bodySchema ? validValue(route.bodySchema) : fc.constant({});
        await sweepRoute(route, () =>
          fc.assert(
            fc.asyncProperty(
              validPathValues(route),
              body,
              fc.oneof(
                fc.integer({ min: 1, max: 4096 }),
                fc.constantFrom(route.bodyLimit, 600 * 1024),
              ),
              async (pathValues, value, excess) => {
                const json = JSON.stringify(value);
                // Whitespace after a JSON value is still valid JSON: only the size is wrong.
                const payload =
                  json + ' '.repeat(Math.max(0, route.bodyLimit + excess - json.length));
                const url = urlFor(route, pathValues);
                const response = await route.target.test.app.inject({
                  method: route.method as 'POST',
                  url,
                  headers: { 'content-type': 'application/json' },
                  payload,
                });
                const context = describeRequest(route.method, url, payload);
                expectSafeAnswer(response, context);
                expect(response.statusCode, context).toBe(413);
              },
            ),
            { numRuns: 5 },
          ),
        );
      }
    });

    it('answers malformed documented headers (Idempotency-Key, forged webhook-*) with a 4xx', async (context) => {
      const signed = (route: Route) =>
        route.headerParams.some((p) => p.name === 'webhook-signature');
      const routesWithHeaders = routes.filter((r) => r.headerParams.length > 0);
      if (routesWithHeaders.length === 0) context.skip('no route documents a header');
      for (const route of routesWithHeaders) {
        const plausible: Record<string, fc.Arbitrary<string>> = {
          'webhook-id': fc.uuid().map((id) => `msg_${id}`),
          'webhook-timestamp': fc
            .integer({ min: -600, max: 600 })
            .map((offset) => String(Math.floor(Date.now() / 1000) + offset)),
          'webhook-signature': fc
            .array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { minLength: 1, maxLength: 3 })
            .map((sigs) => sigs.map((s) => `v1,${Buffer.from(s).toString('base64')}`).join(' ')),
        };
        const headerValue = (name: string) =>
          fc.option(
            fc.oneof(
              headerText,
              plausible[name] ?? headerText,
              fc.constant(['a', 'b']), // the header sent twice
            ),
            { nil: undefined },
          );
        const headers = fc.oneof(
          fc.record(
            Object.fromEntries(route.headerParams.map((p) => [p.name, headerValue(p.name)])),
          ),
          // Every header well-formed: a forged signature must then fail verification itself.
          fc.record(
            Object.fromEntries(
              route.headerParams.map((p) => [p.name, plausible[p.name] ?? headerText]),
            ),
          ),
        ) as fc.Arbitrary<Record<string, string | string[] | undefined>>;
        const statuses = new Set<number>();
        const body = route.bodySchema
          ? validValue(route.bodySchema).map((value) => JSON.stringify(value))
          : fc.oneof(
              fc.jsonValue().map((value) => JSON.stringify(value)),
              fc.uuid().map((id) =>
                JSON.stringify({
                  type: 'customer.created',
                  timestamp: new Date().toISOString(),
                  data: {
                    id,
                    name: 'Forged',
                    email: 'forged@example.com',
                    created_at: '2024-01-01T00:00:00Z',
                  },
                }),
              ),
            );
        await sweepRoute(route, () =>
          fc.assert(
            fc.asyncProperty(
              validPathValues(route),
              headers,
              body,
              async (pathValues, values, payload) => {
                const sent = Object.fromEntries(
                  Object.entries(values).filter(([, value]) => value !== undefined),
                ) as Record<string, string | string[]>;
                // With a valid body, only a malformed header makes the request bad; a signed
                // route's headers are bad anyway: nothing here knows a signing secret.
                fc.pre(signed(route) || !route.validateHeaders!({ ...sent }));
                const url = urlFor(route, pathValues);
                const response = await route.target.test.app.inject({
                  method: route.method as 'POST',
                  url,
                  headers: { ...sent, 'content-type': 'application/json' },
                  payload,
                });
                const context = `${describeRequest(route.method, url, payload)} with ${JSON.stringify(sent).slice(0, 300)}`;
                expectSafeAnswer(response, context);
                expect(response.statusCode, context).toBeGreaterThanOrEqual(400);
                statuses.add(response.statusCode);
              },
            ),
            { numRuns: 60 },
          ),
        );
        // The sweep reached the signature check, not only the header schema.
        if (signed(route)) expect([...statuses]).toContain(401);
      }
    });

    it('answers absurd limit, after, wait, customer_id… query values with 400', async () => {
      for (const route of routes.filter((r) => r.queryParams.length > 0)) {
        const entry = fc.oneof(
          {
            weight: 4,
            arbitrary: fc
              .constantFrom(...route.queryParams)
              .chain((p) => fc.tuple(fc.constant(p.name), absurdValueFor(p.schema))),
          },
          {
            weight: 1,
            arbitrary: fc.tuple(
              fc.oneof(
                fc.constantFrom(...route.queryParams.map((p) => `${p.name}[]`), 'unknown'),
                nastyText,
              ),
              nastyText,
            ),
          },
        );
        const query = fc.oneof(
          {
            weight: 4,
            arbitrary: fc
              .array(entry, { minLength: 1, maxLength: 4 })
              .map((entries) => ({ entries, raw: undefined })),
          },
          {
            weight: 1,
            arbitrary: fc
              .constantFrom(...RAW_QUERY_TRICKS)
              .map((raw) => ({ entries: undefined, raw })),
          },
        );
        await sweepRoute(route, () =>
          fc.assert(
            fc.asyncProperty(
              validPathValues(route),
              query,
              async (pathValues, { entries, raw }) => {
                let refused: boolean | undefined;
                let queryString = raw ?? '';
                if (entries) {
                  queryString = entries
                    .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
                    .join('&');
                  // What the server parses: a repeated name becomes an array.
                  const parsed: Record<string, string | string[]> = {};
                  for (const [k, v] of entries) {
                    const key = asReceived(k);
                    const existing = parsed[key];
                    parsed[key] =
                      existing === undefined ? asReceived(v) : [existing, asReceived(v)].flat();
                  }
                  // An integer JavaScript cannot hold exactly would silently mean another one.
                  const inexact = route.queryParams.some(
                    (p) =>
                      p.schema.type === 'integer' &&
                      [parsed[p.name] ?? []].flat().some((value) => {
                        const number = Number(value);
                        return Number.isInteger(number) && !Number.isSafeInteger(number);
                      }),
                  );
                  refused = inexact || !route.validateQuery!(parsed);
                  // A valid wait would hold the request open as a long-poll.
                  fc.pre(refused || !(Number(parsed.wait) > 0));
                }
                const url = urlFor(route, pathValues, queryString);
                const response = await route.target.test.app.inject({
                  method: route.method as 'GET',
                  url,
                });
                const context = describeRequest(route.method, url);
                expectSafeAnswer(response, context);
                if (refused) expect(response.statusCode, context).toBe(400);
              },
            ),
            { numRuns: 60 },
          ),
        );
      }
    });

    it('answers path parameter tricks (.., %2e%2e, %00, long ids, non-UUIDs) with a 4xx', async () => {
      for (const route of routes.filter((r) => r.pathParams.length > 0)) {
        await sweepRoute(route, () =>
          fc.assert(
            fc.asyncProperty(pathTrick, async (trick) => {
              const url = urlFor(
                route,
                Object.fromEntries(route.pathParams.map((p) => [p.name, trick])),
              );
              const response = await route.target.test.app.inject({
                method: route.method as 'GET',
                url,
                ...(MUTATING_METHODS.has(route.method)
                  ? { headers: { 'content-type': 'application/json' }, payload: '{}' }
                  : {}),
              });
              const context = describeRequest(route.method, url);
              expectSafeAnswer(response, context);
              expect(response.statusCode, context).toBeGreaterThanOrEqual(400);
            }),
            { numRuns: 40, examples: PATH_TRICKS.map((trick) => [trick]) },
          ),
        );
      }
    });

    it.runIf(service.servesDashboard)(
      'serves only the dashboard’s own files, whatever path tricks are tried',
      async () => {
        const target = targets[0]!;
        const files = fs
          .readdirSync(DASHBOARD_DIR)
          .map((name) => fs.readFileSync(`${DASHBOARD_DIR}/${name}`, 'utf8'));
        const outside = fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
        const expectOnlyDashboardFiles = (response: Answer, context: string) => {
          expectSafeAnswer(response, context);
          expect(response.body, context).not.toContain(outside.slice(0, 200));
          if (response.statusCode < 400) {
            // Only a dashboard file (or a byte range of one, for a Range header) may come back.
            expect([200, 206], context).toContain(response.statusCode);
            expect(response.body.length, context).toBeGreaterThan(0);
            expect(
              files.some((content) => content.includes(response.body)),
              context,
            ).toBe(true);
          }
        };
        const climb = fc.constantFrom(
          '..',
          '%2e%2e',
          '%2E%2E',
          '.%2e',
          '%252e%252e',
          '..%2f',
          '..%5c',
          '..\\',
          '%c0%ae%c0%ae',
          '....',
          '..;',
          '',
        );
        const destination = fc.constantFrom(
          'package.json',
          'etc/passwd',
          '.env.example',
          'src/core/http.ts',
          'public/dashboard/index.html',
          ...staticPaths.map((path) => path.slice(1)),
        );
        const suffix = fc.constantFrom(
          '',
          '%00',
          '%00.js',
          '%2500',
          '/',
          '%2f',
          '\\',
          '?x=../../package.json',
          '.',
          '%20',
          '::$DATA',
        );
        const separator = fc.constantFrom('/', '%2f', '%2F', '%252f', '\\', '%5c', '//');
        const trickPath = fc
          .tuple(fc.array(fc.tuple(climb, separator), { maxLength: 4 }), destination, suffix)
          .map(([ups, file, end]) => `/${ups.map(([up, sep]) => up + sep).join('')}${file}${end}`);
        const examples: Array<[string]> = [
          ['/../package.json'],
          ['/..%2fpackage.json'],
          ['/%2e%2e/%2e%2e/etc/passwd'],
          ['/index.html%00.js'],
          ['/..\\package.json'],
          ['/\\..\\package.json'],
          ['/%252e%252e/package.json'],
          ['/dashboard.js%00'],
          ['/index.html/../../package.json'],
          ['/../../package.json'],
          ['/../../../../../../../../etc/passwd'],
        ];

        // In-process, with garbage headers (Range, If-None-Match…); the client normalises `..`
        // and `\` first, and cannot send some paths at all, which the raw sweep below covers.
        await fc.assert(
          fc.asyncProperty(trickPath, garbageHeaders, async (url, headers) => {
            fc.pre(injectable(url));
            const response = await target.test.app.inject({ method: 'GET', url, headers });
            expectOnlyDashboardFiles(response, `GET ${url} with ${JSON.stringify(headers)}`);
          }),
          { numRuns: 150, examples: examples.map(([url]) => [url, {}]) },
        );

        // Over a socket, the request line reaches the router exactly as written.
        await target.test.app.listen({ port: 0, host: '127.0.0.1' });
        const { port } = target.test.app.server.address() as AddressInfo;
        await fc.assert(
          fc.asyncProperty(trickPath, async (path) => {
            expectOnlyDashboardFiles(await rawGet(port, path), `raw GET ${path}`);
          }),
          { numRuns: 60, examples },
        );

        for (const path of staticPaths) {
          const response = await target.test.app.inject({ method: 'GET', url: path });
          expect(response.statusCode, path).toBe(200);
        }
      },
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
