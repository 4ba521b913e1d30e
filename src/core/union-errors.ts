import type { ValidationError } from './validation-messages.js';

/** An Ajv error with what `verbose: true` adds: the schema that failed and the value it failed on. */
export type VerboseError = ValidationError & {
  schemaPath?: string;
  schema?: unknown;
  data?: unknown;
};

/** Errors looked at: the first ones of a body, which is what its sender reads. */
const MAX_ERRORS_NARROWED = 100;

interface Branch {
  properties?: Record<string, { const?: unknown }>;
  required?: string[];
}

/** The fields a branch fixes to a constant, e.g. `{op: "update"}`, and whether each is required. */
function constantsOf(branch: Branch): { name: string; value: unknown; required: boolean }[] {
  return Object.entries(branch.properties ?? {})
    .filter(([, property]) => property.const !== undefined)
    .map(([name, property]) => ({
      name,
      value: property.const,
      required: branch.required?.includes(name) ?? false,
    }));
}

/** Whether `data` is the kind of value `branch` describes: it contradicts none of its constants. */
function isMeant(branch: Branch, data: unknown): boolean {
  const fields = typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {};
  return constantsOf(branch).every(({ name, value, required }) =>
    name in fields ? fields[name] === value : !required,
  );
}

/** What to say of a value that failed `union` (an `anyOf` error), given every error under it. */
function narrowed(union: VerboseError, under: VerboseError[]): VerboseError[] | undefined {
  const branches = union.schema as Branch[];
  const meant = branches.flatMap((branch, index) => (isMeant(branch, union.data) ? [index] : []));
  if (meant.length === 1) {
    return under.filter((error) =>
      error.schemaPath?.startsWith(`${union.schemaPath}/${meant[0]}/`),
    );
  }
  if (meant.length === 0) {
    // No branch is meant: the constant that picks one is wrong, e.g. `op: "delete"`.
    const constants = branches.flatMap(constantsOf);
    const name = constants[0]!.name;
    return [
      {
        keyword: 'enum',
        instancePath: `${union.instancePath}/${name}`,
        params: {
          allowedValues: constants.filter((c) => c.name === name).map((c) => c.value),
        },
      },
    ];
  }
  const missing = under.filter((error) => error !== union);
  if (
    missing.every(
      (error) => error.keyword === 'required' && error.instancePath === union.instancePath,
    )
  ) {
    // Branches that each require one field: any of them will do.
    const names = missing.map(
      (error) => (error.params as { missingProperty?: string }).missingProperty,
    );
    return [
      {
        keyword: 'anyOf',
        instancePath: union.instancePath,
        params: {},
        message: `must have at least one of ${names.join(', ')}`,
      },
    ];
  }
  return undefined;
}

/**
 * Ajv's errors for a value that matches no branch of an `anyOf`, narrowed to what its sender must
 * fix. Ajv lists every branch's errors, then "must match a schema in anyOf"; a person needs those
 * of the branch they meant: the one whose constant fields (e.g. `op: "update"`) the value has, or,
 * where such a field is optional, does not contradict. When no branch is meant, the constant is
 * named with the values allowed; when branches only each require a field, any of those fields is
 * asked for. Needs Ajv's `verbose` errors; others pass unchanged.
 */
export function narrowUnionErrors(errors: readonly VerboseError[]): VerboseError[] {
  // A body with thousands of bad items gives thousands of errors: a person reads the first ones,
  // and narrowing them all would cost time quadratic in their number.
  let result = errors.slice(0, MAX_ERRORS_NARROWED);
  // Outermost first: narrowing it drops the errors of nested unions in branches not meant.
  const unions = result
    .filter((error) => error.keyword === 'anyOf' && Array.isArray(error.schema) && error.schemaPath)
    .sort((a, b) => a.schemaPath!.length - b.schemaPath!.length);
  for (const union of unions) {
    if (!result.includes(union)) continue;
    // Under it: errors of its branches about the same value (an array's items share schema paths).
    const under = result.filter(
      (error) =>
        error === union ||
        (error.schemaPath?.startsWith(`${union.schemaPath}/`) &&
          (error.instancePath === union.instancePath ||
            error.instancePath.startsWith(`${union.instancePath}/`))),
    );
    const replacement = narrowed(union, under);
    if (!replacement) continue;
    const at = result.indexOf(under[0]!);
    result = result.filter((error) => !under.includes(error));
    result.splice(at, 0, ...replacement);
  }
  return result;
}
