import { v7 as uuidv7 } from 'uuid';

/**
 * A new id for a stored row: a UUIDv7 (RFC 9562), whose first 48 bits are the creation time in ms.
 * Rows made one after another get ids that sort one after another, so the unique indexes they go
 * into (customers, package requests, idempotency keys, deliveries) grow at their right-hand edge
 * instead of touching a random B-tree page per row: several times fewer pages written per batch.
 */
export function newId(): string {
  return uuidv7();
}
