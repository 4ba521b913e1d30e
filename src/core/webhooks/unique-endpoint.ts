import { redactUrl } from '../config.js';
import { isUniqueViolation } from '../db.js';
import { HttpProblem } from '../errors.js';

/**
 * Runs `insert` of an endpoint whose `url` must be unique; when one exists already, throws 409
 * `endpoint_exists` naming it (found with `existingId`), the URL's secrets masked.
 */
export async function insertUniqueEndpoint(
  url: string,
  /** How the endpoint is called in the refusal, e.g. `An alert endpoint`. */
  what: string,
  insert: () => Promise<unknown>,
  existingId: () => Promise<string | undefined>,
): Promise<void> {
  try {
    await insert();
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
    const existing = await existingId();
    throw new HttpProblem(
      409,
      'endpoint_exists',
      `${what} for ${redactUrl(url, { everyValue: true })} already exists${existing ? ` (id ${existing})` : ''}; use it, or delete it first.`,
      existing ? { existing_endpoint_id: existing } : {},
    );
  }
}
