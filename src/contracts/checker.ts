import { Compile } from 'typebox/compile';
import type { Static, TSchema } from 'typebox';
import { describeValidationErrors } from '../core/validation-messages.js';

/** A wire message read against its contract: the typed value, or what is wrong with it. */
export type Parsed<T> =
  | { ok: true; value: T }
  | {
      ok: false;
      /** One sentence per field at fault, e.g. `data.id must be a valid uuid`. */
      problems: string[];
    };

/**
 * A reader for messages of `schema`, compiled once: answers the value, typed, when it conforms,
 * and otherwise each field at fault and what it must be.
 */
export function compileParser<S extends TSchema>(schema: S): (value: unknown) => Parsed<Static<S>> {
  const checker = Compile(schema);
  return (value) => {
    if (checker.Check(value)) return { ok: true, value: value as Static<S> };
    const problems = describeValidationErrors(checker.Errors(value)).map(
      ({ field, message }) => `${field} ${message}`,
    );
    return { ok: false, problems };
  };
}
