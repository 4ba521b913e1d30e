import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { describeValidationErrors } from '../../src/core/validation-messages.js';
import { crmService } from '../../src/crm/service.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';

let test: TestApp<unknown> | undefined;
afterEach(async () => {
  await test?.close();
  test = undefined;
});

/** The 400 problem the service answers to each request, on a fresh app of it. */
async function refusal(
  definition: typeof crmService | typeof inventoryService,
  requests: { url: string; payload: object; headers?: Record<string, string> }[],
) {
  test = (await createTestApp(definition as never)) as TestApp<unknown>;
  const problems = [];
  for (const { url, payload, headers } of requests) {
    const response = await test.app.inject({ method: 'POST', url, payload, headers });
    problems.push(
      expectProblem(response, 400) as {
        detail: string;
        errors: { location: string; field: string; message: string }[];
      },
    );
  }
  return problems;
}

describe('validation errors a person can act on', () => {
  it('tells what a name must contain, not the regular expression behind it', async () => {
    const [problem] = await refusal(crmService, [
      { url: '/customers', payload: { name: '   ', email: 'jane@example.com' } },
    ]);
    expect(problem!.errors).toEqual([
      {
        location: 'body',
        field: 'name',
        message:
          'must contain at least one letter, digit, punctuation mark or symbol, and no control characters',
      },
    ]);
    expect(problem!.detail).not.toMatch(/\\p|\^|\$/);
  });

  it('names the length a name must stay within', async () => {
    const [problem] = await refusal(crmService, [
      { url: '/customers', payload: { name: 'x'.repeat(201), email: 'jane@example.com' } },
    ]);
    expect(problem!.errors).toEqual([
      { location: 'body', field: 'name', message: 'must be at most 200 characters' },
    ]);
  });

  it('tells what a package kind and an idempotency key look like', async () => {
    const [key, kind] = await refusal(inventoryService, [
      {
        url: '/package-requests',
        payload: { customer_id: randomUUID() },
        headers: { 'idempotency-key': 'has spaces' },
      },
      { url: '/package-requests', payload: { customer_id: randomUUID(), kind: 'Welcome Package' } },
    ]);
    expect(key!.errors).toEqual([
      {
        location: 'headers',
        field: 'idempotency-key',
        message: 'must be printable ASCII without spaces, e.g. welcome-package:<customer id>',
      },
    ]);
    expect(kind!.errors).toEqual([
      {
        location: 'body',
        field: 'kind',
        message:
          'must start with a lowercase letter and hold only lowercase letters, digits and underscores (at most 64), e.g. welcome_package',
      },
    ]);
  });
});

describe('describeValidationErrors', () => {
  it('names each missing or unknown field, as Ajv and TypeBox report them', () => {
    expect(
      describeValidationErrors([
        { keyword: 'required', instancePath: '/data', params: { missingProperty: 'id' } },
        { keyword: 'required', instancePath: '', params: { requiredProperties: ['a', 'b'] } },
        {
          keyword: 'additionalProperties',
          instancePath: '/items/2',
          params: { additionalProperty: 'x' },
        },
        {
          keyword: 'additionalProperties',
          instancePath: '',
          params: { additionalProperties: ['y'] },
        },
      ]),
    ).toEqual([
      { field: 'data.id', message: 'is required' },
      { field: 'a', message: 'is required' },
      { field: 'b', message: 'is required' },
      { field: 'items.2.x', message: 'is not a known field; remove it' },
      { field: 'y', message: 'is not a known field; remove it' },
    ]);
  });

  it('puts limits and types in words', () => {
    const at = (keyword: string, params: object) =>
      describeValidationErrors([{ keyword, instancePath: '/f', params }])[0]!.message;
    expect(at('minLength', { limit: 1 })).toBe('must not be empty');
    expect(at('minLength', { limit: 3 })).toBe('must be at least 3 characters');
    expect(at('maxItems', { limit: 500 })).toBe('must have at most 500 items; split it');
    expect(at('minimum', { limit: 1 })).toBe('must be at least 1');
    expect(at('maximum', { limit: 1000 })).toBe('must be at most 1000');
    expect(at('type', { type: 'integer' })).toBe('must be a whole number');
    expect(at('type', { type: ['string', 'null'] })).toBe('must be a string or null');
    expect(at('format', { format: 'uuid' })).toBe('must be a valid uuid');
    expect(at('pattern', { pattern: '^never registered$' })).toBe('is not in the expected form');
  });
});
