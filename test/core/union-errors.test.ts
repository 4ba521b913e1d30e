import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { narrowUnionErrors, type VerboseError } from '../../src/core/union-errors.js';
import { describeValidationErrors } from '../../src/core/validation-messages.js';

// A union as the services declare them: one branch per kind, told apart by a constant field that
// one branch leaves optional, and a branch that needs either of two fields.
const schema = {
  anyOf: [
    {
      type: 'object',
      properties: { op: { const: 'add' }, name: { type: 'string', minLength: 1 } },
      required: ['name'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: {
        op: { const: 'rename' },
        id: { type: 'integer' },
        first: { type: 'string' },
        last: { type: 'string' },
      },
      required: ['op', 'id'],
      additionalProperties: false,
      anyOf: [{ required: ['first'] }, { required: ['last'] }],
    },
  ],
};

/** What a person is told about `value`, with verbose errors or without. */
function told(value: unknown, verbose = true): [string, string][] {
  const validate = new Ajv({ allErrors: true, strict: false, verbose }).compile(schema);
  expect(validate(value)).toBe(false);
  return describeValidationErrors(narrowUnionErrors(validate.errors as VerboseError[])).map(
    ({ field, message }) => [field, message],
  );
}

describe('narrowUnionErrors', () => {
  it('tells only the errors of the branch the value’s constant picks', () => {
    expect(told({ op: 'rename', id: 'x', first: 'A' })).toEqual([['id', 'must be a whole number']]);
    expect(told({ op: 'rename', first: 'A', name: 'B' })).toEqual([
      ['id', 'is required'],
      ['name', 'is not a known field; remove it'],
    ]);
  });

  it('takes a value without the optional constant for the branch that leaves it out', () => {
    expect(told({ name: '' })).toEqual([['name', 'must not be empty']]);
    expect(told('add')).toEqual([['(root)', 'must be a JSON object']]);
  });

  it('names the values a constant may take when none fits', () => {
    expect(told({ op: 'delete', id: 1 })).toEqual([['op', 'must be one of "add", "rename"']]);
  });

  it('asks for any one of the fields a nested union needs', () => {
    expect(told({ op: 'rename', id: 1 })).toEqual([
      ['(root)', 'must have at least one of first, last'],
    ]);
  });

  it('leaves errors without their schema (not verbose) as they are', () => {
    const plain = told({ op: 'rename', id: 1 }, false);
    expect(plain.length).toBeGreaterThan(2);
    expect(plain).toContainEqual(['(root)', 'must match a schema in anyOf']);
  });

  it('tells each item of an array its own errors, whichever branch each item meant', () => {
    const validate = new Ajv({ allErrors: true, strict: false, verbose: true }).compile({
      type: 'array',
      items: schema,
    });
    expect(validate([{ op: 'rename', id: 'x', first: 'A' }, { name: '' }])).toBe(false);
    const errors = describeValidationErrors(narrowUnionErrors(validate.errors as VerboseError[]));
    expect(errors.map(({ field, message }) => [field, message])).toEqual([
      ['0.id', 'must be a whole number'],
      ['1.name', 'must not be empty'],
    ]);
  });

  it('narrows only the first 100 errors of a body with many bad items', () => {
    const validate = new Ajv({ allErrors: true, strict: false, verbose: true }).compile({
      type: 'array',
      items: schema,
    });
    expect(
      validate(Array.from({ length: 5_000 }, () => ({ op: 'rename', id: 'x', first: 'A' }))),
    ).toBe(false);
    const narrowed = narrowUnionErrors(validate.errors as VerboseError[]);
    expect(narrowed.length).toBeLessThanOrEqual(100);
    expect(describeValidationErrors(narrowed)[0]).toEqual({
      field: '0.id',
      message: 'must be a whole number',
    });
  });
});
