import { HttpProblem } from '../core/errors.js';

/** The `ETag` of a customer at `version`: a strong tag, e.g. `"3"`. */
export const etagOf = (version: number): string => `"${version}"`;

/** One entity tag of an `If-Match` list (RFC 9110 §8.8.3): `"…"` or weak `W/"…"`. */
const ENTITY_TAG = /^(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"$/;

/**
 * The condition a change is made under (`If-Match`, RFC 9110 §13.1.1): none, any current version
 * (`*`), or one of the listed ones. Comparison is strong, so a weak tag never matches.
 */
export class VersionCondition {
  private constructor(
    /** undefined: no condition; `*`; else the versions the client holds. */
    private readonly allowed: '*' | readonly number[] | undefined,
  ) {}

  static readonly none = new VersionCondition(undefined);

  /** Reads an `If-Match` header; a malformed one is the client's mistake (400). */
  static fromIfMatch(header: string | undefined): VersionCondition {
    if (header === undefined) return VersionCondition.none;
    if (header.trim() === '*') return new VersionCondition('*');
    const versions: number[] = [];
    for (const item of header.split(',')) {
      const match = ENTITY_TAG.exec(item.trim());
      if (!match) {
        throw new HttpProblem(
          400,
          'invalid_if_match',
          `If-Match must be * or a list of entity tags such as "3" (the ETag of the answer you read), not ${JSON.stringify(header)}.`,
        );
      }
      // A weak tag, or one this service never gave, matches no version.
      if (!match[1] && /^[1-9]\d{0,14}$/.test(match[2]!)) versions.push(Number(match[2]));
    }
    return new VersionCondition(versions);
  }

  /** Throws 412 unless a resource at `current` meets the condition. */
  check(current: number): void {
    if (this.allowed === undefined || this.allowed === '*') return;
    if (this.allowed.includes(current)) return;
    throw new HttpProblem(
      412,
      'version_mismatch',
      `The customer is at version ${current} (ETag ${etagOf(current)}), not the one If-Match names; read it again and decide whether your change still applies.`,
      { current_version: current },
      { etag: etagOf(current) },
    );
  }
}
