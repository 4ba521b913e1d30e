import { Type, type TSchemaOptions, type TString } from 'typebox';

/**
 * Validation errors as sentences a person can act on. Both validators report in the same shape:
 * Ajv (Fastify's request validation) and TypeBox's compiled checkers (the wire contracts).
 */
export interface ValidationError {
  keyword: string;
  /** JSON pointer to the value at fault, e.g. `/items/1/customer_id`. */
  instancePath: string;
  params: object;
  message?: string | undefined;
}

/** One field at fault: where it is (`items.1.customer_id`, `(root)`) and what it must be. */
export interface FieldError {
  field: string;
  message: string;
}

/** What each pattern expects, in words, told instead of the pattern itself. */
const patternMessages = new Map<string, string>();

/**
 * A string schema that must match `pattern`; a value that does not is told `message` (what the
 * field expects, e.g. "must contain at least one letter") rather than the regular expression.
 */
export function MatchingString(
  pattern: string,
  message: string,
  options: TSchemaOptions & { minLength?: number; maxLength?: number } = {},
): TString {
  const known = patternMessages.get(pattern);
  if (known !== undefined && known !== message) {
    throw new Error(`The pattern ${pattern} already has a message: "${known}"`);
  }
  patternMessages.set(pattern, message);
  return Type.String({ ...options, pattern });
}

/** True when values failing `pattern` are told in words what it expects. */
export function explainsPattern(pattern: string): boolean {
  return patternMessages.has(pattern);
}

/** Examples shown with a format's message, so the reader sees what is expected. */
const FORMAT_EXAMPLES: Record<string, string> = {
  'date-time': '2026-01-31T09:30:00Z',
};

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function typeName(type: unknown): string {
  const names: Record<string, string> = {
    string: 'a string',
    integer: 'a whole number',
    number: 'a number',
    boolean: 'true or false',
    object: 'a JSON object',
    array: 'a JSON array',
    null: 'null',
  };
  const types = Array.isArray(type) ? type : [type];
  return types.map((each) => names[String(each)] ?? String(each)).join(' or ');
}

/** What the value at fault must be, as the end of a sentence that starts with the field. */
export function messageOf(error: ValidationError): string {
  const params = error.params as Record<string, unknown>;
  const limit = params.limit as number;
  switch (error.keyword) {
    case 'additionalProperties':
      return 'is not a known field; remove it';
    case 'required':
      return 'is required';
    case 'format': {
      const format = params.format as string;
      const example = FORMAT_EXAMPLES[format];
      return example ? `must be a valid ${format}, e.g. ${example}` : `must be a valid ${format}`;
    }
    case 'pattern':
      return patternMessages.get(String(params.pattern)) ?? 'is not in the expected form';
    case 'type':
      return `must be ${typeName(params.type)}`;
    case 'minLength':
      return limit === 1 ? 'must not be empty' : `must be at least ${plural(limit, 'character')}`;
    case 'maxLength':
      return `must be at most ${plural(limit, 'character')}`;
    case 'minProperties':
      return `must have at least ${plural(limit, 'field')}`;
    case 'minItems':
      return `must have at least ${plural(limit, 'item')}`;
    case 'maxItems':
      return `must have at most ${plural(limit, 'item')}; split it`;
    case 'minimum':
      return `must be at least ${limit}`;
    case 'maximum':
      return `must be at most ${limit}`;
    case 'const':
      return `must be ${JSON.stringify(params.allowedValue)}`;
    case 'enum':
      return `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return error.message ?? 'is invalid';
  }
}

/** The fields one error names: a required or unknown property is named itself, not its parent. */
function fieldsOf(error: ValidationError): string[] {
  const params = error.params as Record<string, unknown>;
  const base = error.instancePath.replace(/^\//, '').replaceAll('/', '.');
  // Ajv names one property per error; TypeBox lists them all in one.
  const leaves = [
    params.missingProperty,
    params.additionalProperty,
    ...((params.requiredProperties as unknown[] | undefined) ?? []),
    ...((params.additionalProperties as unknown[] | undefined) ?? []),
  ].filter((leaf): leaf is string => typeof leaf === 'string');
  if (leaves.length === 0) return [base || '(root)'];
  return leaves.map((leaf) => (base ? `${base}.${leaf}` : leaf));
}

/** Each field at fault and what it must be, in the validator's order. */
export function describeValidationErrors(errors: readonly ValidationError[]): FieldError[] {
  return errors.flatMap((error) => {
    const message = messageOf(error);
    return fieldsOf(error).map((field) => ({ field, message }));
  });
}
