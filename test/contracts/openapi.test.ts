import { createConfig, lintFromString, type NormalizedProblem } from '@redocly/openapi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceDefinition } from '../../src/core/service.js';
import { explainsPattern } from '../../src/core/validation-messages.js';
import { crmService } from '../../src/crm/service.js';
import { integrationService } from '../../src/integration/service.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp, type TestApp } from '../support/apps.js';

// Every service serves its OpenAPI document at /openapi.json; each must be valid OpenAPI, as
// client generators and standard validators read it. `struct` checks every object against the
// specification's schema (unknown or misplaced keywords included); the other rules catch what
// the structure alone cannot (unresolvable references, duplicate operation ids, bad paths).
const RULES = {
  struct: 'error',
  'no-unresolved-refs': 'error',
  'operation-operationId-unique': 'error',
  'path-parameters-defined': 'error',
  'no-identical-paths': 'error',
  'spec-components-invalid-map-name': 'error',
  'no-invalid-schema-examples': 'error',
  'no-invalid-media-type-examples': 'error',
} as const;

/** Problems a standard validator finds in `document`, one line each ("path: message"). */
async function lintOpenApi(document: unknown): Promise<string[]> {
  const config = await createConfig({ rules: RULES });
  const problems: NormalizedProblem[] = await lintFromString({
    source: JSON.stringify(document),
    absoluteRef: 'openapi.json',
    config,
  });
  return problems.map(
    (problem) => `${problem.location[0]?.pointer ?? ''}: ${problem.message} (${problem.ruleId})`,
  );
}

const services = [crmService, inventoryService, integrationService] as ServiceDefinition<unknown>[];

/** Every `pattern` in a document, wherever it sits. */
function patternsIn(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(patternsIn);
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([key, value]) =>
    key === 'pattern' && typeof value === 'string' ? [value] : patternsIn(value),
  );
}

describe.each(services.map((definition) => [definition.name, definition] as const))(
  'the %s OpenAPI document',
  (_, definition) => {
    let test: TestApp<unknown> | undefined;
    let document: { openapi?: string } = {};
    beforeAll(async () => {
      test = await createTestApp(definition);
      const response = await test.app.inject({ method: 'GET', url: '/openapi.json' });
      expect(response.statusCode).toBe(200);
      document = response.json();
    });
    afterAll(async () => test?.close());

    it('is valid OpenAPI 3.0.3', async () => {
      expect(document.openapi).toBe('3.0.3');
      expect(await lintOpenApi(document)).toEqual([]);
    });

    it('says in words what each pattern expects, so no refusal shows a regular expression', () => {
      const unexplained = patternsIn(document).filter((pattern) => !explainsPattern(pattern));
      expect(unexplained).toEqual([]);
    });
  },
);
