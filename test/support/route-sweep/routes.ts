import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import fc from 'fast-check';
import { expect } from 'vitest';
import { BODY_LIMIT_BYTES } from '../../../src/core/http.js';
import type { TestApp } from '../apps.js';

// What the apps document about themselves: their routes, read from each app's /openapi.json and
// router, so a route added later is swept without touching the sweep.

export const DASHBOARD_DIR = fileURLToPath(new URL('../../../public/dashboard/', import.meta.url));

export const MUTATING_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export interface JsonSchema {
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

export interface Parameter {
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
export interface Target {
  label: string;
  test: TestApp<unknown>;
  tablesBefore: Map<string, number>;
}

export interface Route {
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
export const bodyAjv = makeAjv(false);
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

export async function documentedRoutes(target: Target): Promise<Route[]> {
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
export function undocumentedGetPaths(target: Target, documented: Route[]): string[] {
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

export function urlFor(route: Route, pathValues: Record<string, string>, query = ''): string {
  const path = route.path.replace(/\{(\w+)\}/g, (_, name: string) => pathValues[name] ?? '');
  return query ? `${path}?${query}` : path;
}

/** A path whose parameters are valid ids that name nothing. */
export const validPathValues = (route: Route) =>
  fc.record(Object.fromEntries(route.pathParams.map((p) => [p.name, fc.uuid()]))) as fc.Arbitrary<
    Record<string, string>
  >;
