import { describe, expect, it } from 'vitest';
import { parseRetryAfter, retryDelayMs, shouldGiveUp } from '../../src/core/backoff.js';
import { readIntegrationConfig } from '../../src/integration/config.js';

const policy = { baseMs: 500, maxDelayMs: 300_000 };

describe('retryDelayMs (exponential backoff, full jitter)', () => {
  it('picks uniformly below a ceiling that doubles per attempt up to the cap', () => {
    expect(retryDelayMs(1, policy, 0, () => 0.999999)).toBe(499);
    expect(retryDelayMs(2, policy, 0, () => 0.999999)).toBe(999);
    expect(retryDelayMs(4, policy, 0, () => 0.5)).toBe(2000);
    expect(retryDelayMs(30, policy, 0, () => 0.999999)).toBe(299_999);
    expect(retryDelayMs(10_000, policy, 0, () => 0.999999)).toBe(299_999);
    expect(retryDelayMs(3, policy, 0, () => 0)).toBe(0);
  });

  it('never retries before Retry-After', () => {
    expect(retryDelayMs(1, policy, 5_000, () => 0)).toBe(5_000);
    expect(retryDelayMs(20, policy, 5_000, () => 0.9)).toBe(270_000);
  });

  it('spreads clients out: delays of many clients at one attempt are not all alike', () => {
    const delays = new Set(Array.from({ length: 100 }, () => retryDelayMs(8, policy)));
    expect(delays.size).toBeGreaterThan(50);
  });
});

describe('shouldGiveUp', () => {
  const limits = { maxAttempts: 20, deadLetterAfterMs: 3_600_000 };
  it('needs both the attempts and the time', () => {
    expect(shouldGiveUp(19, 0, 4_000_000, limits)).toBe(false);
    expect(shouldGiveUp(20, 0, 3_599_999, limits)).toBe(false);
    expect(shouldGiveUp(20, 0, 3_600_000, limits)).toBe(true);
  });

  it('with the defaults, no transient failure is dead-lettered within the first hour, however the jitter falls', () => {
    const config = readIntegrationConfig({});
    const defaults = {
      maxAttempts: config.maxAttempts,
      deadLetterAfterMs: config.deadLetterAfterMs,
      baseMs: config.retryBaseMs,
      maxDelayMs: config.retryMaxDelayMs,
    };
    // Each failing call takes at least 100 ms (a refused connection is quicker, a timeout slower).
    for (const random of [() => 0, () => 0.5, Math.random]) {
      let now = 0;
      let attempts = 0;
      do {
        attempts += 1;
        now += 100;
        if (!shouldGiveUp(attempts, 0, now, defaults))
          now += retryDelayMs(attempts, defaults, 0, random);
      } while (!shouldGiveUp(attempts, 0, now, defaults));
      expect(now).toBeGreaterThanOrEqual(3_600_000);
      expect(attempts).toBeGreaterThanOrEqual(defaults.maxAttempts);
    }
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, and ignores nonsense', () => {
    expect(parseRetryAfter('5', 0)).toBe(5_000);
    expect(parseRetryAfter(' 0 ', 0)).toBe(0);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('99999999', 0)).toBe(86_400_000);
  });
});

describe('integration configuration', () => {
  it('names the variable and what is allowed', () => {
    expect(() => readIntegrationConfig({ SYNC_MODE: 'push' })).toThrow(/SYNC_MODE="push".*poll/);
    expect(() => readIntegrationConfig({ CRM_URL: 'ftp://x' })).toThrow(/CRM_URL.*http:\/\//);
    expect(() => readIntegrationConfig({ DELIVERY_CONCURRENCY: '0' })).toThrow(
      /DELIVERY_CONCURRENCY="0"/,
    );
    expect(readIntegrationConfig({ INVENTORY_URL: 'http://inv:8001/' }).inventoryUrl).toBe(
      'http://inv:8001',
    );
  });
});
