import { Type } from 'typebox';
import { MatchingString } from './validation-messages.js';

/**
 * Text a person typed: at least one letter, digit, punctuation mark or symbol (spaces, zero-width
 * and other invisible characters alone are blank), no control characters or lone surrogates
 * (PostgreSQL rejects NUL).
 */
export const PlainText = (options: { maxLength: number; description: string }) =>
  MatchingString(
    '^(?=.*[\\p{L}\\p{N}\\p{P}\\p{S}])[^\\p{Cc}\\p{Cs}]+$',
    'must contain at least one letter, digit, punctuation mark or symbol, and no control characters',
    { minLength: 1, maxLength: options.maxLength, description: options.description },
  );

export const Uuid = (description: string) => Type.String({ format: 'uuid', description });

export const Timestamp = (description: string) => Type.String({ format: 'date-time', description });

/** Query string of a paginated list: `limit` (default 100, at most 1000) and `after` (an id). */
export const PageQuery = {
  limit: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 100,
    description: 'Largest number of items to return (1–1000, default 100).',
  }),
  after: Type.Optional(
    Uuid('Return items created after the item with this id (the last id of the previous page).'),
  ),
};

/** Response headers of a paginated list, for the OpenAPI document. */
export const paginationHeaders = {
  link: {
    type: 'string',
    description: 'RFC 8288 `<…>; rel="next"` link to the next page, present when there is one.',
  },
};
